"""The GPU benchmark (fersr_stream/bench/gpu.py): its CLI checks, and a CPU-sized run end to end (slow)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fersr_stream.bench import gpu as bench_gpu


def test_bench_gpu_rejects_a_bad_face_list():
    """Import-clean, and the CLI checks its lists before building anything (the full run is marked slow)."""
    result = CliRunner().invoke(bench_gpu.main, ["--device", "cpu", "--faces", "1,x"])
    assert result.exit_code == 2 and "expected comma-separated integers" in result.output


@pytest.mark.slow
def test_bench_gpu_end_to_end_on_the_cpu():
    result = CliRunner().invoke(bench_gpu.main, ["--device", "cpu", "--faces", "1", "--frames", "1", "--size", "144",
                                                 "--sweep", "1", "--repeat", "1", "--detector", "mtcnn"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("device: CPU")
    for needle in ("1 face(s): 1 frames 256x144, 1.0 faces/frame", "ours / loop:", "batch   1:",
                   "fp16 vs fp32: skipped", "detection at width 480", "mtcnn (host frames)",
                   "decode webm"):
        assert needle in result.output
