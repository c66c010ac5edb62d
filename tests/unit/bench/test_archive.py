"""The archive benchmark (bench/archive.py) end to end on two tiny clips: a plain row and a Ray row, each scored."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")


@pytest.mark.slow  # starts a local Ray and a worker: about 30 s on 2 cores
def test_the_benchmark_times_plain_and_ray_runs_with_recall_and_equality():
    from fersr_stream.bench import archive

    result = CliRunner().invoke(archive.main, ["--clips", "2", "--frames", "6", "--width", "160", "--height", "120",
                                               "--workers", "1"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith(("plain, ", "ray, "))]
    assert [" ".join(r[:3]) for r in rows] == ["plain, 1 process", "ray, 1 worker"], result.output
    for row in rows:  # seconds min/median, files/h, frames/s, [speed-up], recall, equal JSON lines
        assert 0 < float(row[3].split("/")[0]) <= float(row[3].split("/")[1]) and int(row[4]) > 0
        assert float(row[5]) > 0
        assert float(row[-2]) > 0.5 and row[-1] == "2/2"  # faces found, and the JSON lines of a plain run


def test_a_bad_worker_list_is_a_usage_error():
    from fersr_stream.bench import archive

    result = CliRunner().invoke(archive.main, ["--workers", "1,x"])
    assert result.exit_code == 2 and "expected comma-separated integers" in result.output
