"""fersr-train plan: the grid counted from the study's own cells, the estimate's arithmetic, the command."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from training import config, phases, plan, splits, synthetic
from training.cli import cli

SMOKE = config.installed()["smoke"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthetic.write(root, 6, width=112)
    return root


def test_grid_counts_cells_evaluations_and_restorations(synth, tmp_path):
    cfg = config.load(SMOKE, [f"data.root={synth}", f"out={tmp_path}", "protocol.seeds=[0, 1]",
                              "protocol.only_folds=[0, 2]", "phases.arms=[hr, lr, restored]",
                              "train.models=[resnet18, mini_xception]", "ablation.align=[]"])
    grid = plan.count(cfg)
    # per fold and seed: hr + lr at 2 widths + restored at 2 widths x 1 restorer; mini_xception once per fold
    assert grid.training_cells == 2 * 2 * 5 and len(grid.cells) == 20 + 2
    # hr: HR + 2 widths x (LR, bicubic) = 5 tests; lr and restored cells 1 each; zero-shot 5
    assert grid.evaluations == 2 * 2 * (5 + 2 + 2) + 2 * 5
    dataset = phases.load_dataset(cfg)
    folds = splits.make(dataset, cfg.protocol)
    tests = sum(len(folds[k].test) for k in (0, 2))
    assert grid.test_images == tests * (2 * (5 + 2 + 2) + 5)
    hr = next(c for c in grid.cells if c.arm == "hr")
    assert (hr.train_images, hr.val_images, hr.epochs) == (len(folds[0].train), len(folds[0].val), 3)
    # the restored arm trains on restored faces: every face of folds 0 and 2 is restored at both widths
    assert grid.restorations == {"bicubic": len(dataset) * 2}
    assert (grid.images, grid.detect) == (len(dataset), len(dataset))  # the smoke config runs MTCNN on each
    assert (grid.folds, grid.seeds, grid.widths) == ((0, 2), (0, 1), (8, 16))


def _grid(cells, restorations=None, images=100):
    return plan.Grid(models=("resnet18",), folds=(0,), seeds=(0,), arms=("hr",), widths=(8,),
                     restorers=("gfpgan",), cells=tuple(cells), evaluations=len(cells),
                     restorations=restorations or {}, images=images)


def test_estimate_arithmetic():
    costs = plan.Costs("cpu", train={"resnet18": 0.1}, test={"resnet18": 0.01, "mini_xception": 0.001},
                       restore={"gfpgan": 2.0}, cut=0.036)
    cell = plan.CellWork("resnet18", "hr", train_images=100, val_images=20, test_images=50, epochs=3)
    assert plan.cell_seconds(cell, costs) == pytest.approx(3 * (100 * 0.1 + 20 * 0.01) + 50 * 0.01)  # 31.1 s
    zero = plan.CellWork("mini_xception", "zero-shot", 0, 0, 1000, 0)
    assert plan.cell_seconds(zero, costs) == pytest.approx(1.0)
    grid = _grid([cell] * 4 + [zero], {"gfpgan": 3600})
    one = plan.estimate(grid, costs, 1)
    assert one["cut_h"] == pytest.approx(100 * 0.036 / 3600)  # 3.6 s, never split
    assert one["restore_h"] == pytest.approx(2.0)  # 3600 faces x 2 s
    assert one["cells_h"] == pytest.approx((4 * 31.1 + 1.0) / 3600)
    assert one["total_h"] == pytest.approx(one["cut_h"] + one["restore_h"] + one["cells_h"])
    four = plan.estimate(grid, costs, 4)
    assert four["restore_h"] == pytest.approx(0.5) and four["cut_h"] == one["cut_h"]
    assert four["cells_h"] == pytest.approx((31.1 + 1.0) / 3600)  # the zero-shot cell joins a worker
    sixteen = plan.estimate(grid, costs, 16)
    assert sixteen["cells_h"] == pytest.approx(31.1 / 3600)  # one cell can not be split
    assert plan.makespan([5, 4, 3, 3, 3], 2) == 10  # longest first onto the least loaded: 5+3, 4+3+3
    with pytest.raises(ValueError):
        plan.estimate(grid, costs, 0)


def test_fersr_train_plan_on_the_smoke_config(synth, tmp_path):
    result = CliRunner().invoke(cli, ["plan", "--config", "smoke", "--set", f"data.root={synth}", "--out",
                                      str(tmp_path), "--workers", "1,4"], prog_name="fersr-train")
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = result.output
    assert "grid: models resnet18; folds [0]; seeds [0]; arms hr; widths 8, 16 px; restorers bicubic" in out
    # hr on landmark-aligned faces (5 tests) and the box ablation's hr cell (HR, 8 px, 8 px bicubic)
    assert "training cells 2 (+ 0 zero-shot), evaluations 8" in out and "restorations 420" in out
    assert "train resnet18:" in out and "restore bicubic:" in out and "cut a face:" in out
    rows = [line.split() for line in out.splitlines() if line.strip().split(" ")[0] in ("1", "4")]
    assert [r[0] for r in rows] == ["1", "4"]
    assert not (tmp_path / "smoke").exists()  # planning writes no experiment
    # what it is timing, while it does (minutes for the full grid on a CPU)
    assert "plan: timing resnet18 training and testing on cpu" in result.stderr
    assert "plan: timing bicubic restoration on cpu" in result.stderr and "plan:" not in result.stdout


def test_plan_draws_a_synthetic_set_it_needs_aside_and_writes_nothing(tmp_path):
    missing = tmp_path / "not" / "there"
    result = CliRunner().invoke(cli, ["plan", "--config", "smoke", "--data", str(missing), "--out", str(tmp_path),
                                      "--workers", "1", "--quiet"], prog_name="fersr-train")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "images to cut 420" in result.stdout and result.stderr == ""
    assert sorted(tmp_path.iterdir()) == []  # neither the data folder nor a run folder
    result = CliRunner().invoke(cli, ["plan", "--config", "smoke", "--workers", "0"], prog_name="fersr-train")
    assert result.exit_code == 2 and "--workers expects counts >= 1" in result.stderr
