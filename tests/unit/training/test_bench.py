"""``python -m training.bench --plan-cell`` on the smoke config: the plan's estimate of one training cell beside
that cell run through the study, with measured/plan and the cell's accuracy."""

from __future__ import annotations

import math
import re

import pytest
import torch

from training import bench

ROW = re.compile(r"^(?P<part>[a-z +()]+?)\s{2,}(?P<plan>[\d.]+|-)\s+(?P<measured>[\d.]+)\s+(?P<ratio>[\d.]+|-)$")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The smoke config sets torch to one thread in this process; give later tests their threads back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_plan_cell_prints_the_estimate_the_measured_cell_their_ratio_and_its_accuracy(capsys):
    bench.main(["--plan-cell", "--set", "train.epochs=1", "--set", "ablation.align=[]"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("plan vs one measured cell on cpu") and "resnet18, arm hr" in lines[0]
    assert lines[2].split() == ["part", "plan", "s", "measured", "s", "measured/plan"]
    rows = {m["part"]: m for m in map(ROW.match, lines[3:7])}
    assert list(rows) == ["epochs (train + validate)", "tests", "rest of the cell", "whole cell"], lines
    for part in ("epochs (train + validate)", "tests", "whole cell"):
        plan, measured, ratio = (float(rows[part][k]) for k in ("plan", "measured", "ratio"))
        assert plan > 0 and measured > 0 and 0 < ratio < math.inf
        assert ratio == pytest.approx(measured / plan, rel=0.02, abs=0.01)  # as printed, rounded
    whole = float(rows["whole cell"]["measured"])
    parts = sum(float(rows[p]["measured"]) for p in ("epochs (train + validate)", "tests", "rest of the cell"))
    assert parts == pytest.approx(whole, abs=0.03)
    accuracy = next(line for line in lines if line.startswith("accuracy: "))
    assert "best epoch 1 of 1" in accuracy
    tags = dict(re.findall(r"(hr|lr\d+(?:-\w+)?) (\d\.\d{3})", accuracy))
    assert set(tags) == {"hr", "lr8", "lr8-bicubic", "lr16", "lr16-bicubic"}
    assert all(0 <= float(a) <= 1 for a in tags.values())
    assert lines[-1].startswith("outside the cell") and "faces cut" in lines[-1]
