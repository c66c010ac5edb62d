"""The smoke study end to end on the synthetic KDEF-shaped set (CPU), its rerun, and a 2-process DDP run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from training.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "train" / "smoke.yaml"


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The smoke config sets torch to one thread in this process; give later tests their threads back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _run(tmp_path, *extra):
    result = CliRunner().invoke(cli, ["run", "--config", str(SMOKE), "--out", str(tmp_path / "runs"), "--quiet",
                                      "--set", f"data.root={tmp_path / 'synth'}", *extra], prog_name="fersr-train")
    assert result.exit_code == 0, result.output + repr(result.exception)
    return tmp_path / "runs" / "smoke"


def test_smoke_study_end_to_end_then_rerun_does_nothing(tmp_path, monkeypatch):
    folder = _run(tmp_path)
    for name in ("config.yaml", "run.json", "data.json", "splits.json", "results.csv", "results.md",
                 "per_class.csv", "mcnemar.csv", "REPORT.md", "figures/accuracy_vs_width_resnet18.png",
                 "figures/examples_w16.png"):
        assert (folder / name).is_file(), name
    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    # HR, then LR and bicubic at 8 and 16 px, for fold 0
    assert sorted(r["test"] for r in rows) == ["hr", "lr16", "lr16-bicubic", "lr8", "lr8-bicubic"]
    assert {r["phase"] for r in rows} == {"1", "2", "3"}
    cell = folder / "cells" / "resnet18" / "train-hr" / "fold0"
    assert not (cell / "train_state.pt").exists()  # removed once the model is exported
    from fersr_stream.classify import load

    classifier = load(cell / "model.safetensors", "cpu")
    assert classifier.arch == "resnet18" and classifier.preprocessing.size == 48
    test = json.loads((cell / "test-hr.json").read_text())
    splits = json.loads((folder / "splits.json").read_text())
    assert test["keys"] == splits["folds"][0]["test"] and test["n"] == len(test["preds"])
    report = (folder / "REPORT.md").read_text()
    assert "Synthetic data" in report and "| resnet18 | hr | 3 | hr | 8 px | bicubic |" in report

    # A rerun finds every cell finished: no training and no restoration at all.
    from training import cache, engine

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished study must not train or restore again")

    monkeypatch.setattr(engine, "fit", forbidden)
    monkeypatch.setattr(cache.RestorationCache, "_restore", forbidden)
    before = (cell / "test-lr8.json").read_text()
    _run(tmp_path)
    assert (cell / "test-lr8.json").read_text() == before

    # A changed protocol may not reuse the folder.
    result = CliRunner().invoke(cli, ["run", "--config", str(SMOKE), "--out", str(tmp_path / "runs"), "--quiet",
                                      "--set", f"data.root={tmp_path / 'synth'}", "--set", "protocol.seed=5"],
                                prog_name="fersr-train")
    assert result.exit_code == 2 and "holds a run with other" in result.stderr


@pytest.mark.slow
def test_two_process_ddp_smoke(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.cli", "run", "--config", str(SMOKE), "--out", str(tmp_path / "runs"), "--quiet",
           "--set", f"data.root={tmp_path / 'synth'}", "--set", "train.epochs=1",
           "--set", "phases.widths=[8]", "--set", "report.example_widths=[8]"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = tmp_path / "runs" / "smoke"
    assert json.loads((folder / "run.json").read_text())["world_size"] == 2
    fit = json.loads((folder / "cells" / "resnet18" / "train-hr" / "fold0" / "fit.json").read_text())
    assert len(fit["history"]) == 1
    assert sorted(json.loads(p.read_text())["test"] for p in folder.glob("cells/*/*/fold0/test-*.json")) == \
        ["hr", "lr8", "lr8-bicubic"]
    assert (folder / "REPORT.md").is_file()


@pytest.mark.slow
def test_killed_study_resumes_to_the_same_numbers(tmp_path):
    """SIGKILL the smoke study after its first epoch checkpoint; the rerun matches an uninterrupted run."""
    import signal
    import time

    def command(out):
        return [sys.executable, "-m", "training.cli", "run", "--config", str(SMOKE), "--out", str(out), "--quiet",
                "--set", f"data.root={tmp_path / 'synth'}", "--set", "phases.widths=[8]"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "whole"), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    victim = subprocess.Popen(command(tmp_path / "killed"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "smoke" / "cells" / "resnet18" / "train-hr" / "fold0" / "train_state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert state.exists(), "the run ended before its first epoch checkpoint"
    subprocess.run(command(tmp_path / "killed"), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    for name in ("test-hr.json", "test-lr8.json", "test-lr8-bicubic.json", "fit.json"):
        whole = json.loads((tmp_path / "whole/smoke/cells/resnet18/train-hr/fold0" / name).read_text())
        resumed = json.loads((tmp_path / "killed/smoke/cells/resnet18/train-hr/fold0" / name).read_text())
        if name == "fit.json":
            assert [h["val_acc"] for h in whole["history"]] == [h["val_acc"] for h in resumed["history"]]
            assert [h["train_loss"] for h in whole["history"]] == [h["train_loss"] for h in resumed["history"]]
        else:
            assert whole["preds"] == resumed["preds"]
