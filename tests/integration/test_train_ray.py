"""``fersr-train run --executor ray`` on a local Ray with 2 CPUs: the cache and the cells as Ray tasks give the
serial run's predictions and report, and a rerun finds every cell done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fersr_stream.archive import connect
from training.cli import cli

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "train" / "smoke.yaml"
GRID = ("--set", "train.epochs=1", "--set", "phases.arms=[hr,lr]")  # fold 0: 3 cells and the ablation's box cell


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The smoke config sets torch to one thread in this process; give later tests their threads back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run(out: Path, data: Path, *extra) -> Path:
    result = CliRunner().invoke(cli, ["run", "--config", str(SMOKE), "--out", str(out), "--quiet", "--set",
                                      f"data.root={data}", *GRID, *extra], prog_name="fersr-train")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out / "smoke"


def _predictions(folder: Path) -> dict[str, list]:
    return {str(p.relative_to(folder)): json.loads(p.read_text())["preds"]
            for p in sorted(folder.glob("cells/**/test-*.json"))}


@pytest.mark.slow  # the smoke study twice and a local Ray: about 2 minutes on 2 cores
def test_the_study_on_ray_predicts_as_the_serial_run(tmp_path):
    serial = _run(tmp_path / "serial", tmp_path / "synth")
    connect.init(None, num_cpus=2)
    try:
        on_ray = _run(tmp_path / "ray", tmp_path / "synth", "--executor", "ray", "--workers", "2")
        assert len(_predictions(on_ray)) == 5 + 2 + 3  # hr 5 ways, lr8 and lr16 once each; box hr: hr, lr8, bicubic
        assert _predictions(on_ray) == _predictions(serial)
        assert (on_ray / "results.csv").read_text() == (serial / "results.csv").read_text()
        models = sorted(on_ray.glob("cells/**/model.safetensors"))
        stamps = [p.stat().st_mtime_ns for p in models]
        _run(tmp_path / "ray", tmp_path / "synth", "--executor", "ray", "--workers", "2")  # resumes: all done
        assert [p.stat().st_mtime_ns for p in models] == stamps
    finally:
        ray.shutdown()


def test_ray_flags_need_the_ray_executor(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--config", str(SMOKE), "--workers", "2"], prog_name="fersr-train")
    assert result.exit_code == 2 and "--workers only applies with --executor ray" in result.output
