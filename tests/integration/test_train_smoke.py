"""The smoke study end to end on the synthetic KDEF-shaped set (CPU), its rerun, and a 2-process DDP run."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fersr_stream.classify.labels import KDEF_CODES
from tests.unit.training.test_quality import metric_mirror, publish  # noqa: F401 (a fixture, and its helper)
from training import config, synthetic
from training import report as training_report
from training.cli import cli

ROOT = Path(__file__).resolve().parents[2]
SMOKE = config.installed()["smoke"]


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


def _image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None and min(image.shape[:2]) >= 200, path
    return image


def test_smoke_study_end_to_end_then_rerun_does_nothing(tmp_path, monkeypatch, make_clip):
    monkeypatch.setenv("FERSR_HOME", str(tmp_path / "home"))  # no quality-metric weights cached
    folder = _run(tmp_path, "--set", "train.epochs=1")  # the shipped 3 epochs run in the slow resume test
    # every artifact the study promises
    for name in ("config.yaml", "run.json", "data.json", "faces.json", "splits.json", "results.csv", "results.md",
                 "per_class.csv", "mcnemar.csv", "faces_by_view.csv", "ablation.csv", "REPORT.md", "persons.json",
                 "hypothesis.csv", "quality.csv", "quality.json", "grid.json"):
        assert (folder / name).is_file(), name
    written = len(list(folder.glob("cells/**/test-*.json")))
    assert written > 5 and training_report.done(folder) == (written, written)  # the grid names what the run wrote
    assert "Partial" not in (folder / "REPORT.md").read_text()
    assert yaml.safe_load((folder / "config.yaml").read_text())["phases"]["degrade"]["interpolation"] == "bilinear"
    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    # HR, then LR and bicubic at 8 and 16 px, for fold 0
    assert sorted(r["test"] for r in rows) == ["hr", "lr16", "lr16-bicubic", "lr8", "lr8-bicubic"]
    assert {r["phase"] for r in rows} == {"1", "2", "3"}
    table = (folder / "results.md").read_text()
    assert table.count("\n") == 2 + 5 and table.count(" % (n=1) | 1 |") == 5  # header, rule, a line per condition
    assert "± 0.0" not in table  # one fold: no spread to show
    with open(folder / "per_class.csv") as f:
        per_class = list(csv.DictReader(f))
    assert len(per_class) == 5 * 7 and {r["emotion"] for r in per_class} == set(KDEF_CODES)
    assert set(per_class[0]) >= {"precision", "recall", "f1", "support"}
    with open(folder / "breakdown" / "angles.csv") as f:
        angles = list(csv.DictReader(f))
    assert {r["angle"] for r in angles} == {"FL", "HL", "S", "HR", "FR"} and len(angles) == 5 * 5
    assert sum(int(r["n"]) for r in angles if r["test"] == "hr") == len(json.loads(
        (folder / "splits.json").read_text())["folds"][0]["test"])
    with open(folder / "mcnemar.csv") as f:
        tests = list(csv.DictReader(f))
    assert sorted((r["width"], r["fold"]) for r in tests) == [("16", "0"), ("16", "all"), ("8", "0"), ("8", "all")]
    assert all(0 <= float(r["p"]) <= 1 and r["restorer"] == "bicubic" for r in tests)
    # figures: a confusion matrix per condition, the width plot, and the example grid (7 emotions x 3 columns)
    assert len([_image(p) for p in (folder / "figures" / "confusion").glob("*.png")]) == 5
    _image(folder / "figures" / "accuracy_vs_width_resnet18.png")
    grid = _image(folder / "figures" / "examples_w16.png")
    assert grid.shape[0] > 2 * grid.shape[1]  # 7 rows of faces, 3 columns
    cell = folder / "cells" / "resnet18" / "landmarks" / "train-hr" / "fold0"
    assert not (cell / "train_state.pt").exists()  # removed once the model is exported
    assert {p.name for p in cell.iterdir()} == {"model.safetensors", "fit.json"} | {f"test-{r['test']}.json"
                                                                                     for r in rows}
    from fersr_stream.classify import load

    classifier = load(cell / "model.safetensors", "cpu")
    assert classifier.arch == "resnet18" and classifier.preprocessing.size == 48
    # the framing it was trained on, which the stream's crop stage follows; the ablation's model says box
    assert (classifier.preprocessing.align, classifier.preprocessing.margin) == ("landmarks", 0.25)
    boxed = load(folder / "cells" / "resnet18" / "box" / "train-hr" / "fold0" / "model.safetensors", "cpu")
    assert boxed.preprocessing.align == "box"
    test = json.loads((cell / "test-hr.json").read_text())
    splits = json.loads((folder / "splits.json").read_text())
    assert test["keys"] == splits["folds"][0]["test"] and test["n"] == len(test["preds"])
    report = (folder / "REPORT.md").read_text()
    assert "Synthetic data" in report and "| resnet18 | hr | 3 | hr | 8 px | bicubic |" in report
    assert "3-fold cross-validation (of which only fold 0 ran: `protocol.only_folds`)" in report
    assert re.search(r"The \d+ of \d+ faces the detector missed get the same fallback box in both arms", report)
    assert "bilinear interpolation" in report and "figures/accuracy_vs_width_resnet18.png" in report
    assert "examples_w16.png" in report and "McNemar" in report
    assert "### Per view angle" in report
    # MTCNN's landmarks aligned the faces it found; every other face got KDEF's box: counted per view
    with open(folder / "faces_by_view.csv") as f:
        views = list(csv.DictReader(f))
    assert [v["view"] for v in views] == ["FL", "HL", "S", "HR", "FR", "all"]
    total = views[-1]
    assert int(total["images"]) == 420 and int(total["detected"]) == int(total["landmarks"]) > 0
    assert int(total["landmarks"]) + int(total["detector_box"]) + int(total["fallback_box"]) == 420
    assert f"| all | 420 | {total['detected']} | {total['landmarks']} | 0 | {total['fallback_box']} |" in report
    cuts = json.loads((folder / "faces.json").read_text())["cut"]  # each face's cut
    assert len(cuts) == 420 and sum(c == "landmarks" for c in cuts.values()) == int(total["landmarks"])
    # the ablation: resnet18's hr arm on box crops against the main (landmark-aligned) run, HR and 8 px
    assert "## Aligned by landmarks vs. box" in report and "| resnet18 | hr | 8 px | bicubic |" in report
    with open(folder / "ablation.csv") as f:
        ablation = list(csv.DictReader(f))
    assert [r["test"] for r in ablation] == ["hr", "lr8", "lr8-bicubic"]
    for r in ablation:
        assert abs(float(r["difference_pp"]) - 100 * (float(r["landmarks"]) - float(r["box"]))) < 1e-6
    assert len(rows) == 5  # the ablation's cells stay out of the main tables
    # the hypothesis: bicubic vs. plain LR tested at both widths; the arms that did not run say so
    with open(folder / "hypothesis.csv") as f:
        hypothesis = list(csv.DictReader(f))
    assert sorted((r["width"], r["kind"], r["status"][:10]) for r in hypothesis) == \
        [(w, k, s) for w in ("16", "8") for k, s in (("b", "not tested"), ("c", "not tested"), ("d", "tested"))]
    persons = json.loads((folder / "persons.json").read_text())
    assert persons["AF01AFS"] == "F01" and len(persons) == 6 * 7 * 5 * 2  # people x emotions x views x sessions
    assert "## Does restoring beat training on LR?" in report and "add `lr` to `phases.arms`" in report
    # quality: PSNR and SSIM of LR and bicubic at both widths; LPIPS and identity skipped, the command named
    with open(folder / "quality.csv") as f:
        measured = {r["test"]: r for r in csv.DictReader(f)}
    assert sorted(measured) == ["lr16", "lr16-bicubic", "lr8", "lr8-bicubic"]
    assert float(measured["lr16"]["psnr_mean"]) > float(measured["lr8"]["psnr_mean"])
    assert 0 < float(measured["lr8"]["ssim_mean"]) < float(measured["lr16"]["ssim_mean"]) < 1
    assert "## Restoration quality" in report and "Not measured: lpips, identity" in report
    assert "`fersr-models download alexnet.imagenet inception_resnet_v1.vggface2 lpips.alex_v0_1`" in report
    _image(folder / "figures" / "gain_vs_quality.png")

    # fersr-stream runs the exported model on a video
    from fersr_stream.cli.stream import stream

    clip, _ = make_clip(n_frames=3)
    jsonl = tmp_path / "faces.jsonl"
    result = CliRunner().invoke(stream, ["--source", str(clip), "--jsonl", str(jsonl), "--device", "cpu",
                                         "--classifier", str(cell / "model.safetensors")])
    assert result.exit_code == 0, result.output
    used = yaml.safe_load((tmp_path / "faces.fersr.yaml").read_text())["classify"]["weights"]
    assert used == str(cell / "model.safetensors")
    faces = [f for line in jsonl.read_text().splitlines() for f in json.loads(line)["faces"]]
    assert faces and all(abs(sum(f["probs"].values()) - 1) < 1e-3 for f in faces)

    # A rerun finds every cell finished: no training and no restoration at all.
    from training import cache, engine

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished study must not train or restore again")

    monkeypatch.setattr(engine, "fit", forbidden)
    monkeypatch.setattr(cache.RestorationCache, "_restore", forbidden)
    before = (cell / "test-lr8.json").read_text()
    _run(tmp_path, "--set", "train.epochs=1")
    assert (cell / "test-lr8.json").read_text() == before

    # A changed protocol may not reuse the folder.
    result = CliRunner().invoke(cli, ["run", "--config", str(SMOKE), "--out", str(tmp_path / "runs"), "--quiet",
                                      "--set", f"data.root={tmp_path / 'synth'}", "--set", "train.epochs=1",
                                      "--set", "protocol.seed=5"],
                                prog_name="fersr-train")
    assert result.exit_code == 2 and "holds a run with other" in result.stderr
    assert "(protocol.seed differ)" in result.stderr  # the key that differs is named


def test_quality_of_every_metric_from_downloaded_random_weights_then_rerun_measures_nothing(
        tmp_path, monkeypatch, metric_mirror):  # noqa: F811 (the imported fixture)
    """quality.missing=download fetches the metric weights (random files in the registry's layouts, served by a
    mirror); LPIPS and identity join PSNR and SSIM; a rerun reads the per-face scores back."""
    publish(metric_mirror, monkeypatch, tmp_path / "home")
    small = ("--set", "train.epochs=1", "--set", "data.angles=[S]", "--set", "phases.widths=[8, 16]",
             "--set", "quality.missing=download", "--set", "stats.mcnemar=midp")
    folder = _run(tmp_path, *small)
    with open(folder / "quality.csv") as f:
        rows = {r["test"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["lr16", "lr16-bicubic", "lr8", "lr8-bicubic"]
    assert {f"{m}_{s}" for m in ("psnr", "ssim", "lpips", "identity") for s in ("mean", "std")} <= set(rows["lr8"])
    faces = int(rows["lr8"]["faces"])
    assert faces == len(json.loads((folder / "splits.json").read_text())["folds"][0]["test"])
    assert float(rows["lr16"]["lpips_mean"]) < float(rows["lr8"]["lpips_mean"])  # closer at the larger width
    assert all(-1 <= float(r["identity_mean"]) <= 1 and float(r["lpips_mean"]) > 0 for r in rows.values())
    assert json.loads((folder / "quality.json").read_text())["skipped"] == {}
    with np.load(folder / "quality" / "lr8-bicubic.npz") as saved:  # per-face scores, in the test faces' order
        assert saved["lpips"].shape == saved["identity"].shape == (faces,) and len(saved["images"]) == faces
        assert float(rows["lr8-bicubic"]["identity_mean"]) == pytest.approx(saved["identity"].mean())
    report = (folder / "REPORT.md").read_text()
    assert "| LPIPS (lower = closer) | identity (cosine) |" in report and "Not measured" not in report
    assert "Mid-p McNemar" in report
    figure = _image(folder / "figures" / "gain_vs_quality.png")
    assert figure.shape[1] > 3 * figure.shape[0]  # four panels side by side

    from fersr_stream.quality.base import Metric

    def forbidden(*args, **kwargs):
        raise AssertionError("the rerun must read the per-face scores back, not measure again")

    monkeypatch.setattr(Metric, "__call__", forbidden)
    before = (folder / "quality.csv").read_text()
    _run(tmp_path, *small)
    assert (folder / "quality.csv").read_text() == before


def test_missing_metric_weights_stop_the_run_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("FERSR_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["run", "--config", str(SMOKE), "--out", str(tmp_path / "runs"), "--quiet",
                                      "--set", f"data.root={tmp_path / 'synth'}", "--set", "quality.missing=stop",
                                      "--set", "quality.metrics=[ssim, identity]"], prog_name="fersr-train")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "`fersr-models download inception_resnet_v1.vggface2` adds them" in result.stderr
    assert not (tmp_path / "runs" / "smoke").exists()


def test_restore_shards_in_two_processes_then_the_run_restores_nothing(tmp_path, monkeypatch):
    """``fersr-train restore --shard i/2`` in two concurrent processes fills one cache; the study then only reads
    it."""
    synthetic.write(tmp_path / "synth", 4, width=112)
    # The whole grid on two of three folds of 28 frontal faces: zero-shot mini-Xception, the extension arms (the
    # restored arm trains on restored faces, so every face gets restored), the progressive schedule.
    tiny = [f"--set={item}" for item in (
        "data.angles=[S]", "data.sessions=[A]", "protocol.folds=3", "protocol.only_folds=[0, 2]", "phases.widths=[8]",
        "report.example_widths=[8]", "train.models=[resnet18, mini_xception]", "phases.arms=[hr, lr, restored]",
        "train.schedule=pipeline", "train.head_epochs=1", "train.epochs=2", "ablation.align=[]")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "training.cli", "restore", "--config", str(SMOKE), "--quiet",
                               "--out", str(tmp_path / "runs"), "--set", f"data.root={tmp_path / 'synth'}", *tiny,
                               "--shard", f"{i}/2"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    counts = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
        line = next(x for x in out.splitlines() if x.startswith("lr8-bicubic:"))
        counts.append([int(v) for v in re.findall(r"\d+", line.split(":", 1)[1])])  # restored, cached, others
    assert counts[0][0] + counts[1][0] == 28 and counts[0][2] == counts[1][0] and counts[1][2] == counts[0][0]
    assert not (tmp_path / "runs" / "smoke").exists()  # restoring writes only the cache

    from training import cache

    def forbidden(*args, **kwargs):
        raise AssertionError("the shards filled the cache: the study must not restore again")

    monkeypatch.setattr(cache.RestorationCache, "_restore", forbidden)
    folder = _run(tmp_path, *tiny)
    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["model"], r["arm"], r["train"], r["test"], r["phase"]) for r in rows}
    expected = {(m, arm, "hr", test, phase) for m, arm in (("resnet18", "hr"), ("mini_xception", "zero-shot"))
                for test, phase in (("hr", "1"), ("lr8", "2"), ("lr8-bicubic", "3"))}
    expected |= {("resnet18", "lr", "lr8", "lr8", "ext-lr"),
                 ("resnet18", "restored", "lr8-bicubic", "lr8-bicubic", "ext-restored")}
    assert cells == expected and len(rows) == 2 * len(expected)  # every cell on both folds
    fits = sorted(folder.glob("cells/resnet18/*/*/fold*/fit.json"))
    assert len(fits) == 3 * 2  # three arms, two folds (the alignment ablation is off here)
    for fit in fits:
        history = json.loads(fit.read_text())["history"]
        assert len(history) == 2 and all(0 <= h["val_acc"] <= 1 for h in history), fit
    with open(folder / "mcnemar.csv") as f:  # restored vs. LR exists for the models tested on both
        assert {(r["model"], r["train"]) for r in csv.DictReader(f)} == {("resnet18", "hr"), ("mini_xception", "hr")}
    assert {p.name for p in (folder / "figures").glob("accuracy_vs_width_*.png")} == \
        {"accuracy_vs_width_resnet18.png", "accuracy_vs_width_mini_xception.png"}


def test_two_process_ddp_smoke(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "training.cli", "run", "--config", str(SMOKE), "--out", str(tmp_path / "runs"), "--quiet",
           "--set", f"data.root={tmp_path / 'synth'}", "--set", "train.epochs=1",
           "--set", "phases.widths=[8]", "--set", "report.example_widths=[8]", "--set", "ablation.align=[]"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("report: ") == 1, done.stdout  # rank 0 only
    folder = tmp_path / "runs" / "smoke"
    assert json.loads((folder / "run.json").read_text())["world_size"] == 2
    fit = json.loads((folder / "cells" / "resnet18" / "landmarks" / "train-hr" / "fold0" / "fit.json").read_text())
    assert len(fit["history"]) == 1
    assert sorted(json.loads(p.read_text())["test"] for p in folder.glob("cells/*/landmarks/*/fold0/test-*.json")) \
        == ["hr", "lr8", "lr8-bicubic"]
    assert (folder / "REPORT.md").is_file()
    # one process in the folder of a two-process run would mix models of two kinds: refused in one line
    result = CliRunner().invoke(cli, ["run", "--config", str(SMOKE), "--out", str(tmp_path / "runs"), "--quiet",
                                      "--set", f"data.root={tmp_path / 'synth'}", "--set", "train.epochs=1",
                                      "--set", "phases.widths=[8]", "--set", "report.example_widths=[8]"],
                                prog_name="fersr-train")
    assert result.exit_code == 2 and "(world_size differ)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_killed_study_resumes_to_the_same_numbers(tmp_path):
    """SIGKILL the smoke study after its first epoch checkpoint; the rerun matches an uninterrupted run."""
    import signal
    import time

    def command(out):
        return [sys.executable, "-m", "training.cli", "run", "--config", str(SMOKE), "--out", str(out), "--quiet",
                "--set", f"data.root={tmp_path / 'synth'}", "--set", "phases.widths=[8]", "--set", "ablation.align=[]"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command(tmp_path / "whole"), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    victim = subprocess.Popen(command(tmp_path / "killed"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    state = tmp_path / "killed/smoke/cells/resnet18/landmarks/train-hr/fold0/train_state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert state.exists(), "the run ended before its first epoch checkpoint"
    subprocess.run(command(tmp_path / "killed"), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    for name in ("test-hr.json", "test-lr8.json", "test-lr8-bicubic.json", "fit.json"):
        whole = json.loads((tmp_path / "whole/smoke/cells/resnet18/landmarks/train-hr/fold0" / name).read_text())
        resumed = json.loads((tmp_path / "killed/smoke/cells/resnet18/landmarks/train-hr/fold0" / name).read_text())
        if name == "fit.json":
            assert [h["val_acc"] for h in whole["history"]] == [h["val_acc"] for h in resumed["history"]]
            assert [h["train_loss"] for h in whole["history"]] == [h["train_loss"] for h in resumed["history"]]
        else:
            assert whole["preds"] == resumed["preds"]
