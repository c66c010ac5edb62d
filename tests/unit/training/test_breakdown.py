"""Breakdowns: per seed, per KDEF view angle, detected vs. fallback box, per-class precision/recall/F1."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from training import breakdown, kdef, report, synthetic


def _cell(keys, labels, preds, seed=0, fold=0, test="hr"):
    labels, preds = np.array(labels), np.array(preds)
    confusion = np.zeros((7, 7), int)
    np.add.at(confusion, (labels, preds), 1)
    return {"model": "resnet18", "arm": "hr", "train": "hr", "test": test, "fold": fold, "seed": seed,
            "phase": "1", "width": None, "restorer": "hr", "n": len(labels),
            "accuracy": float((labels == preds).mean()), "confusion": confusion.tolist(), "keys": list(keys),
            "labels": labels.tolist(), "preds": preds.tolist()}


KEYS = ["AF01AFS", "AF01ANS", "AF01AFFL", "AF01ANFL"]


def test_images_json_records_each_images_angle(tmp_path):
    dataset = kdef.load(synthetic.write(tmp_path, 2, width=48), angles=("S", "FL"))
    table = breakdown.image_table(dataset)
    assert len(table) == len(dataset) and table["AF01AFS"] == {"angle": "S", "session": "A", "person": "F01"}


def test_accuracy_per_angle_pools_runs():
    images = {"AF01AFS": {"angle": "S"}, "AF01ANS": {"angle": "S"}, "AF01AFFL": {"angle": "FL"},
              "AF01ANFL": {"angle": "FL"}}
    cells = [_cell(KEYS, [0, 1, 0, 1], [0, 1, 0, 0], seed=0), _cell(KEYS, [0, 1, 0, 1], [0, 0, 1, 0], seed=1)]
    rows = {r["angle"]: r for r in breakdown.angles(cells, images)}
    assert (rows["S"]["n"], rows["S"]["correct"]) == (4, 3) and (rows["FL"]["n"], rows["FL"]["correct"]) == (4, 1)
    assert [r["angle"] for r in breakdown.angles(cells, images)] == ["FL", "S"]  # left profile first
    assert breakdown.angles(cells, {}) == []  # a dataset without angles has no angle table


def test_detected_vs_fallback_only_where_a_detector_ran():
    cells = [_cell(KEYS, [0, 1, 0, 1], [0, 1, 1, 0])]
    found = {"crop": "detect", "detector": "haar", "fallback": "KDEF's fixed box",
             "not_detected_keys": ["AF01AFFL", "AF01ANFL"]}
    rows = {r["box"]: r for r in breakdown.detection(cells, found)}
    assert rows["detected"]["accuracy"] == 1.0 and rows["fallback"]["accuracy"] == 0.0
    assert breakdown.detection(cells, {"crop": "box"}) == []


def test_per_seed_means_over_folds():
    cells = [_cell(KEYS, [0, 1, 0, 1], [0, 1, 0, 1], seed=s, fold=k) for s in (0, 1) for k in (0, 1)]
    cells[-1] = _cell(KEYS, [0, 1, 0, 1], [0, 0, 0, 0], seed=1, fold=1)
    rows = {r["seed"]: r for r in breakdown.seeds(cells)}
    assert rows[0]["accuracy"] == 1.0 and rows[1]["accuracy"] == pytest.approx(0.75) and rows[1]["folds"] == 2


def test_per_class_precision_recall_f1():
    cells = [_cell(KEYS, [0, 0, 1, 1], [0, 1, 1, 1])]  # AF: P 1, R 0.5; AN: P 2/3, R 1
    rows = {r["emotion"]: r for r in breakdown.per_class(cells)}
    assert (rows["AF"]["precision"], rows["AF"]["recall"]) == (1.0, 0.5)
    assert rows["AF"]["f1"] == pytest.approx(2 / 3) and rows["AN"]["f1"] == pytest.approx(0.8)
    assert rows["NE"]["support"] == 0 and rows["NE"]["recall"] is None and rows["NE"]["precision"] is None
    assert report.macro_f1(cells[0]["confusion"]) == pytest.approx((2 / 3 + 0.8) / 2)


def test_write_makes_the_csvs_and_the_report_section(tmp_path):
    cells = [_cell(KEYS, [0, 1, 0, 1], [0, 1, 0, 0], seed=s) for s in (0, 1)]
    (tmp_path / "images.json").write_text(json.dumps({k: {"angle": k[-1] if k[-1] == "S" else "FL"}
                                                      for k in KEYS}))
    (tmp_path / "faces.json").write_text(json.dumps({"crop": "detect", "detector": "haar", "fallback": "x",
                                                     "not_detected_keys": ["AF01ANFL"]}))
    text = breakdown.write(tmp_path, cells)
    for name in ("seeds", "angles", "detection"):
        with open(tmp_path / "breakdown" / f"{name}.csv") as f:
            assert list(csv.DictReader(f)), name
    assert "| resnet18 | hr | hr | hr | 50.0 % (n=4) | 100.0 % (n=4) |" in text  # FL, S
    assert "| resnet18 | hr | hr | hr | 100.0 % (n=6) | 0.0 % (n=2) |" in text  # detected, fallback
    assert "### Per training seed" in text and "### Per-class F1" in text
