"""Report: mean +- std over folds, McNemar on discordant pairs, figures and REPORT.md from cell JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fersr_stream.errors import ConfigError
from training import report
from training.cli import cli


def _cell(folder, fold, test, width, restorer, preds, labels, model="resnet18", seed=0):
    labels, preds = np.array(labels), np.array(preds)
    confusion = np.zeros((7, 7), int)
    np.add.at(confusion, (labels, preds), 1)
    phase = "1" if width is None else ("2" if restorer == "none" else "3")
    blob = {"model": model, "arm": "hr", "fold": fold, "seed": seed, "train": "hr", "test": test, "phase": phase,
            "width": width, "restorer": restorer, "n": len(labels), "accuracy": float((labels == preds).mean()),
            "per_class": {},
            "confusion": confusion.tolist(), "keys": [f"f{fold}-{i}" for i in range(len(labels))],
            "labels": labels.tolist(), "preds": preds.tolist()}
    run = f"fold{fold}" + (f"-seed{seed}" if seed else "")
    path = folder / "cells" / model / "train-hr" / run / f"test-{test}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(blob))


@pytest.fixture()
def experiment(tmp_path):
    labels = [0, 1, 2, 3, 4, 5, 6, 0, 1, 2]
    for fold in (0, 1):
        _cell(tmp_path, fold, "hr", None, "hr", labels, labels)
        lr = labels[:5] + [6, 6, 6, 6, 6]  # 5 right (or 6 with the SU image) on LR
        _cell(tmp_path, fold, "lr8", 8, "none", lr, labels)
        restored = [6, 6] + labels[2:8] + [6, 6]  # loses 2 of LR's right answers, gains 2 (fold 0)
        if fold == 1:
            restored = labels  # gains every wrong one
        _cell(tmp_path, fold, "lr8-bicubic", 8, "bicubic", restored, labels)
    return tmp_path


def test_summary_and_mcnemar(experiment):
    cells = report.load_cells(experiment)
    rows = {r["test"]: r for r in report.summarise(cells)}
    assert rows["hr"]["mean"] == 1.0 and rows["hr"]["folds"] == 2 and rows["hr"]["std"] == 0.0
    assert rows["lr8-bicubic"]["mean"] == pytest.approx((0.6 + 1.0) / 2)
    assert rows["lr8-bicubic"]["std"] == pytest.approx(np.std([0.6, 1.0], ddof=1))
    tests = {(r["fold"]): r for r in report.mcnemar(cells)}
    # fold 0: LR right on 0-4 and 6 (SU), restored right on 2-7: b = {0, 1}, c = {5, 7}
    assert (tests[0]["b"], tests[0]["c"]) == (2, 2) and tests[0]["p"] == pytest.approx(1.0)
    assert (tests[1]["b"], tests[1]["c"]) == (0, 4) and tests[1]["p"] == pytest.approx(0.125)
    pooled = tests["all"]
    assert (pooled["n"], pooled["b"], pooled["c"]) == (20, 2, 6)
    from scipy.stats import binomtest

    assert pooled["p"] == pytest.approx(binomtest(6, 8, 0.5).pvalue)


def test_write_makes_tables_figures_and_report(experiment):
    (experiment / "data.json").write_text(json.dumps({"root": "/data/KDEF", "kind": "kdef", "counts": {"images": 20},
                                                      "issues": [{"file": "AF31/AF31V.JPG", "action": "renamed",
                                                                  "reason": "misnamed"}]}))
    path = report.write(experiment)
    text = path.read_text()
    assert "| resnet18 | hr | 3 | hr | 8 px | bicubic | 80.0 ± 28.3 % | " in text
    assert "AF31/AF31V.JPG" in text and "McNemar" in text
    assert (experiment / "figures" / "accuracy_vs_width_resnet18.png").stat().st_size > 1000
    assert len(list((experiment / "figures" / "confusion").glob("*.png"))) == 3
    csv_lines = (experiment / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 6 and csv_lines[0].startswith("model,arm,train,test,phase")
    per_class = (experiment / "per_class.csv").read_text().splitlines()
    assert per_class[0] == "model,arm,train,test,emotion,support,precision,recall,f1" and len(per_class) == 1 + 3 * 7
    assert {p.name for p in (experiment / "breakdown").iterdir()} == {"seeds.csv", "angles.csv", "detection.csv"}
    assert "## Breakdowns" in text and "Per-class F1" in text


def test_one_run_shows_n_1_never_a_zero_spread(tmp_path):
    labels = [0, 1, 2, 3, 4, 5, 6]
    _cell(tmp_path, 0, "hr", None, "hr", [0, 1, 2, 3, 4, 5, 5], labels)
    rows = report.summarise(report.load_cells(tmp_path))
    assert rows[0]["std"] is None and rows[0]["f1_std"] is None and rows[0]["runs"] == 1
    table = report.markdown_table(rows)
    assert "| 85.7 % (n=1) |" in table and "±" not in table.split("\n", 2)[2]
    assert report.percent(0.5, 0.0, 2) == "50.0 ± 0.0 %"  # two runs that agree do have a spread of 0


def test_macro_f1_from_the_confusion_matrix():
    conf = np.zeros((7, 7), int)
    conf[0, 0], conf[0, 1], conf[1, 1] = 2, 2, 4  # AF: P 1, R 0.5; AN: P 4/6, R 1; other emotions absent
    f1_af, f1_an = 2 * 0.5 / 1.5, 2 * (4 / 6) / (4 / 6 + 1)
    assert report.macro_f1(conf) == pytest.approx((f1_af + f1_an) / 2)


def test_seeds_are_runs_beside_folds_and_mcnemar_pairs_within_a_seed(tmp_path):
    labels = [0, 1, 2, 3, 4, 5, 6, 0]
    for fold in (0, 1):
        for seed in (0, 1):
            lr = labels if seed == 0 else [6] * 8  # seed 1's LR is wrong everywhere
            _cell(tmp_path, fold, "lr8", 8, "none", lr, labels, seed=seed)
            _cell(tmp_path, fold, "lr8-bicubic", 8, "bicubic", labels, labels, seed=seed)
    cells = report.load_cells(tmp_path)
    rows = {r["test"]: r for r in report.summarise(cells)}
    assert (rows["lr8"]["runs"], rows["lr8"]["folds"], rows["lr8"]["seeds"]) == (4, 2, 2)
    assert report.runs_label(rows["lr8"]) == "4 (2 folds × 2 seeds)"
    assert report.runs_label({"runs": 2, "folds": 1, "seeds": 2}) == "2 (1 fold × 2 seeds)"
    tests = report.mcnemar(cells)
    per_run = {(r["fold"], r["seed"]): r for r in tests if r["fold"] != "all"}
    assert len(per_run) == 4
    # matched within a seed: seed 0's restored agrees with its own LR; seed 1 gains every image but SU
    assert per_run[(0, 0)]["b"] == per_run[(0, 0)]["c"] == 0 and per_run[(0, 1)]["c"] == 7
    pooled = next(r for r in tests if r["fold"] == "all")
    assert (pooled["n"], pooled["b"], pooled["c"]) == (32, 0, 14)


def test_the_alignment_ablation_and_faces_per_view(experiment):
    """Cells of the old layout (``cells/<model>/train-*``, no ``align``) load as the main run's; the ablation's
    box-cut cells (``cells/<model>/box/...``) stay out of the main tables and are set against them in pp."""
    labels = [0, 1, 2, 3, 4, 5, 6, 0, 1, 2]
    for fold in (0, 1):
        for test, width, restorer in (("hr", None, "hr"), ("lr8", 8, "none")):
            old = experiment / "cells" / "resnet18" / "train-hr" / f"fold{fold}" / f"test-{test}.json"
            blob = json.loads(old.read_text())
            right = 4 if test == "hr" else 2  # of 10: 40 % and 20 % on box crops
            preds = labels[:right] + [(y + 1) % 7 for y in labels[right:]]
            blob.update(align="box", preds=preds, accuracy=right / 10)
            path = experiment / "cells" / "resnet18" / "box" / "train-hr" / f"fold{fold}" / f"test-{test}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(blob))
    views = [{"view": v, "images": 10, "detected": 9, "landmarks": 9, "detector_box": 0, "fallback_box": 1}
             for v in ("FL", "S", "all")]
    (experiment / "faces.json").write_text(json.dumps({"crop": "detect", "align": "landmarks", "by_view": views}))
    text = report.write(experiment).read_text()
    rows = (experiment / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 6  # header, three conditions x two folds: the box cells are not in it
    main, ablation = report.split_alignments(report.load_cells(experiment), "landmarks")
    assert len(main) == 6 and len(ablation) == 4 and {c["align"] for c in ablation} == {"box"}
    compared = report.compare_alignments(main, ablation)
    assert [(r["test"], r["folds"]) for r in compared] == [("hr", 2), ("lr8", 2)]
    hr, lr = compared
    assert (hr["landmarks"], hr["box"]) == (1.0, 0.4) and abs(hr["difference_pp"] - 60) < 1e-9
    assert abs(lr["landmarks"] - 0.6) < 1e-9 and abs(lr["difference_pp"] - 40) < 1e-9  # LR: 6 of 10 right
    assert "## Aligned by landmarks vs. box" in text
    assert "| resnet18 | hr | HR | hr | 100.0 % | 40.0 % | +60.0 | 2 |" in text
    assert "| S | 10 | 9 | 9 | 0 | 1 |" in text and (experiment / "faces_by_view.csv").read_text().count("\n") == 4


def test_a_damaged_cell_file_is_one_line_naming_it(tmp_path):
    _cell(tmp_path, 0, "lr8", 8, "none", [0, 1], [0, 1])
    damaged = tmp_path / "cells" / "resnet18" / "train-hr" / "fold0" / "test-lr8.json"
    damaged.write_text(damaged.read_text()[:40])  # cut by a disk error, say
    with pytest.raises(ConfigError, match=f"^{damaged} is damaged .*delete it and run the study again"):
        report.load_cells(tmp_path)
    for edited in ("[]", '{"model": "resnet18"}'):  # valid JSON, but not a cell's metrics
        damaged.write_text(edited)
        with pytest.raises(ConfigError, match=f"^{damaged} is damaged \\(not a cell's metrics\\)"):
            report.load_cells(tmp_path)


@pytest.mark.parametrize("text, problem", [("name: smoke\ntrain:\n  epochs: [3\n", "is not valid YAML: .*line 4"),
                                           ("- a\n", "must hold a mapping")])
def test_a_damaged_saved_config_is_one_line_naming_it(experiment, text, problem):
    (experiment / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=f"^the run's config {experiment / 'config.yaml'} {problem}"):
        report.write(experiment)


def test_a_report_of_a_stopped_run_says_how_much_of_its_grid_is_done(experiment):
    finished = sorted(p.relative_to(experiment).as_posix() for p in experiment.glob("cells/**/test-*.json"))
    grid = finished + ["cells/resnet18/train-hr/fold2/test-hr.json", "cells/resnet18/train-hr/fold2/test-lr8.json"]
    (experiment / "grid.json").write_text(json.dumps({"results": grid}))
    assert report.done(experiment) == (6, 8)
    text = report.write(experiment).read_text()
    assert "> **Partial.** 6 of the 8 evaluations this config runs are finished" in text
    (experiment / "run.json").write_text("{}")
    result = CliRunner().invoke(cli, ["report", str(experiment)])
    assert result.exit_code == 0 and "fersr-train: partial: 6 of 8 evaluations are finished" in result.stderr
    (experiment / "grid.json").write_text(json.dumps({"results": finished}))
    assert "Partial" not in report.write(experiment).read_text()
    (experiment / "grid.json").unlink()  # a folder from before the grid was recorded
    assert report.done(experiment) is None and "Partial" not in report.write(experiment).read_text()


def test_a_report_of_no_finished_cells_is_refused(tmp_path):
    (tmp_path / "run.json").write_text("{}")  # a run stopped before its first cell
    with pytest.raises(ConfigError, match="has no finished evaluation cells yet"):
        report.write(tmp_path)
    assert not (tmp_path / "REPORT.md").exists()
