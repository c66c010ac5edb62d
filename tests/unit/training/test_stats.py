"""The hypothesis tests: McNemar (exact, mid-p), Holm, the person bootstrap, the table and its verdicts."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import binomtest

from fersr_stream.errors import ConfigError
from training import config as tconfig
from training import report, stats
from training.stats import StatsConfig


def test_mcnemar_by_hand():
    # b = 1, c = 5: P(X <= 1) for X ~ Bin(6, 1/2) is (1 + 6) / 64
    assert stats.mcnemar_p(1, 5) == pytest.approx(14 / 64)
    assert stats.mcnemar_p(5, 1) == pytest.approx(14 / 64)
    assert stats.mcnemar_p(1, 5, midp=True) == pytest.approx(14 / 64 - 6 / 64)
    assert stats.mcnemar_p(0, 4) == pytest.approx(2 / 16)
    assert stats.mcnemar_p(0, 0) == 1.0 and stats.mcnemar_p(3, 3) == 1.0 and stats.mcnemar_p(3, 3, midp=True) == 1.0


@pytest.mark.parametrize("b, c", [(0, 1), (2, 9), (10, 10), (13, 40), (120, 151), (400, 333)])
def test_exact_mcnemar_is_scipys_binomial_test(b, c):
    assert stats.mcnemar_p(b, c) == pytest.approx(binomtest(c, b + c, 0.5).pvalue, rel=1e-9)
    assert stats.mcnemar_p(b, c, midp=True) <= stats.mcnemar_p(b, c)


def test_holm_on_a_known_list():
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped
    assert stats.holm([]) == []


def test_bootstrap_resamples_people_not_images():
    """Each person is right on all or none of their images: clustered by person the interval is much wider than
    an image-level one, and it is the one that holds the truth (what a new set of people would show)."""
    rng = np.random.default_rng(1)
    people = np.repeat(np.arange(20), 30)  # 20 people x 30 images
    person_right = rng.random(20) < 0.5
    right_a = person_right[people]
    right_b = np.zeros_like(right_a)
    by_person = stats.bootstrap(right_a, right_b, list(people), 1000, seed=0)
    by_image = stats.bootstrap(right_a, right_b, list(range(len(people))), 1000, seed=0)
    width = {k: v[1] - v[0] for k, v in by_person.items()}
    assert width["acc_a"] > 3 * (by_image["acc_a"][1] - by_image["acc_a"][0])
    assert width["acc_b"] == 0.0 and by_person["diff"] == pytest.approx(by_person["acc_a"])
    lo, hi = by_person["acc_a"]
    assert lo < right_a.mean() < hi
    assert stats.bootstrap(right_a, right_b, list(people), 1000, seed=0) == by_person  # seeded


def _cell(model, arm, train, width, restorer, fold, keys, labels, preds):
    test = "hr" if width is None else f"lr{width}" + ("" if restorer == "none" else f"-{restorer}")
    return {"model": model, "arm": arm, "train": train, "test": test, "width": width, "restorer": restorer,
            "fold": fold, "keys": keys, "labels": labels, "preds": preds, "n": len(keys),
            "accuracy": float(np.mean(np.array(labels) == np.array(preds))), "phase": "3", "confusion": []}


def _grid(arms=("hr", "lr")):
    """resnet18 at 8 px on 40 images of 8 people: gfpgan right on all, bicubic on 30, LR and the lr arm on 10."""
    keys = [f"P{i // 5}-{i}" for i in range(40)]
    labels = [i % 7 for i in range(40)]

    def preds(n_right):
        return [lab if i < n_right else (lab + 1) % 7 for i, lab in enumerate(labels)]

    cells = [_cell("resnet18", "hr", "hr", 8, "gfpgan", 0, keys, labels, preds(40)),
             _cell("resnet18", "hr", "hr", 8, "bicubic", 0, keys, labels, preds(30)),
             _cell("resnet18", "hr", "hr", 8, "none", 0, keys, labels, preds(10))]
    if "lr" in arms:
        cells.append(_cell("resnet18", "lr", "lr8", 8, "none", 0, keys, labels, preds(10)))
    persons = {k: k.split("-")[0] for k in keys}
    return cells, persons


def test_table_counts_and_verdicts():
    cells, persons = _grid()
    rows = stats.hypothesis(cells, persons, StatsConfig(bootstrap=500))
    by = {(r["restorer"], r["kind"]): r for r in rows}
    # gfpgan: a (vs bicubic), b, c, d; bicubic: b, c, d
    assert sorted(by) == sorted([("gfpgan", k) for k in "abcd"] + [("bicubic", k) for k in "bcd"])
    gb = by[("gfpgan", "b")]
    assert (gb["n"], gb["persons"], gb["a_only"], gb["b_only"]) == (40, 8, 30, 0)
    assert gb["acc_a"] == 1.0 and gb["acc_b"] == 0.25 and gb["diff"] == pytest.approx(0.75)
    assert gb["p"] == pytest.approx(binomtest(0, 30, 0.5).pvalue)
    assert gb["verdict"] == "supported" and gb["diff_lo"] > 0
    ga = by[("gfpgan", "a")]
    assert (ga["a_only"], ga["b_only"]) == (10, 0)
    # 10 discordant pairs, all from people 6 and 7: Holm p = 2^-9 (the largest p, times 1) < 0.05, but one in ten
    # resamples of people lacks both (A - B = 0 there), so the interval reaches 0: inconclusive
    assert ga["p_holm"] < 0.05 and ga["diff_lo"] == 0.0 and ga["verdict"] == "inconclusive"
    # the restored arm did not run: the rows say so and leave the family of 6 tested rows
    assert by[("gfpgan", "c")]["status"] == "not tested: the `restored` arm did not run (`phases.arms`)"
    assert by[("gfpgan", "c")]["verdict"].startswith("not tested")
    tested = [r for r in rows if r["status"] == "tested"]
    assert len(tested) == 5
    assert by[("gfpgan", "b")]["p_holm"] == pytest.approx(min(1, 5 * gb["p"]))  # the smallest p, times m


def test_other_way_is_not_supported_and_missing_arm_leaves_the_family():
    cells, persons = _grid(arms=("hr",))
    for c in cells:  # plain LR now right everywhere, bicubic wrong everywhere
        if c["restorer"] == "none":
            c["preds"] = list(c["labels"])
        if c["restorer"] == "bicubic":
            c["preds"] = [(label + 1) % 7 for label in c["labels"]]
    rows = stats.hypothesis(cells, persons, StatsConfig(bootstrap=500))
    by = {(r["restorer"], r["kind"]): r for r in rows}
    assert by[("bicubic", "d")]["verdict"] == "contradicted" and by[("bicubic", "d")]["diff_hi"] < 0
    assert by[("gfpgan", "d")]["verdict"] == "inconclusive"  # equal accuracy
    assert by[("gfpgan", "b")]["status"] == "not tested: the `lr` arm did not run (`phases.arms`)"
    assert len([r for r in rows if r["status"] == "tested"]) == 3  # a, and d twice


def test_pairs_match_on_fold_seed_and_image():
    keys, labels = ["P0-0", "P0-1"], [0, 1]
    a = [dict(_cell("m", "hr", "hr", 8, "bicubic", 0, keys, labels, labels), seed=s) for s in (0, 1)]
    b = [dict(_cell("m", "hr", "hr", 8, "none", 0, keys, labels, [1, 1]), seed=s) for s in (0, 1)]
    row = next(r for r in stats.hypothesis(a + b, {}, StatsConfig(bootstrap=100)) if r["kind"] == "d")
    assert (row["n"], row["a_only"], row["persons"]) == (4, 2, 2)  # no person ids: each image its own cluster


def test_stats_config_is_validated():
    assert tconfig.load(None, ["stats.mcnemar=midp", "stats.alpha=0.01"]).stats.mcnemar == "midp"
    for bad, words in (("stats.mcnemar=fisher", "stats.mcnemar"), ("stats.alpha=1.5", "stats.alpha"),
                       ("stats.bootstrap=10", "stats.bootstrap"), ("stats.alfa=0.1", "alfa")):
        with pytest.raises(ConfigError, match=words):
            tconfig.load(None, [bad])


def test_report_has_the_table_and_hypothesis_csv(tmp_path):
    cells, persons = _grid()
    for c in cells:
        path = tmp_path / "cells" / c["model"] / f"train-{c['train']}" / "fold0" / f"test-{c['test']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**c, "per_class": {}, "confusion": np.zeros((7, 7), int).tolist()}))
    (tmp_path / "persons.json").write_text(json.dumps(persons))
    (tmp_path / "config.yaml").write_text("stats:\n  bootstrap: 200\n  mcnemar: midp\n")
    text = report.write(tmp_path).read_text()
    assert "## Does restoring beat training on LR?" in text
    assert "beat training on LR in 2 of 2 tested" in text and "Mid-p McNemar" in text
    assert "resamples of people" in text and "family of all 5 tested rows" in text
    assert "Only 8 people in the smallest row: the intervals are coarse" in text
    assert "| resnet18 | 8 px | HR + gfpgan > trained on LR | 40 (8) |" in text
    assert "not tested: the `restored` arm did not run" in text
    with open(tmp_path / "hypothesis.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 and {r["align"] for r in rows} == {"box"} and {r["kind"] for r in rows} == set("abcd")
