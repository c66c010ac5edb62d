"""The MTCNN benchmark: it runs, reports each measurement, and agrees with facenet-pytorch where that is installed."""

from __future__ import annotations

import importlib.util
import re

import torch
from click.testing import CliRunner

from fersr_stream.bench import mtcnn as bench_mtcnn


def test_reports_speed_refine_and_agreement():
    threads = torch.get_num_threads()
    result = CliRunner().invoke(bench_mtcnn.main, ["--widths", "320", "--threads", "1", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    assert "threads 1 width 320: detect" in result.output and "threads 1 refine: 1 face" in result.output
    assert torch.get_num_threads() == threads  # put back
    if importlib.util.find_spec("facenet_pytorch") is None:
        assert "facenet-pytorch not installed" in result.output
    else:
        assert float(re.search(r"largest difference ([\d.]+) px", result.output).group(1)) < 1.0
