"""Benchmark of the study's machinery on the smoke config (CPU by default).

Prints training throughput (images/s) and the share of each epoch the model spends waiting for data, for a
few DataLoader worker counts, then the restoration cache cold vs. warm: restorer calls and seconds.

    python -m training.bench [--config smoke] [--epochs 2] [--workers 0,2]

With ``--plan-cell``, instead: the study plan's estimate of one training cell (``fersr-train plan``'s per-item
costs times the cell's images, :func:`training.plan.cell_parts`) beside that same cell run through the study
(:meth:`training.phases.Study.run_cell`) and timed, part by part, with the cell's accuracy.

    python -m training.bench --plan-cell [--config smoke] [--set device=cuda]

Timings on a shared machine are noisy: compare rows of one run, and say which machine they came from.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from . import config as tconfig
from . import engine, phases, plan
from .cache import Condition, RestorationCache

SMOKE = tconfig.installed()["smoke"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(SMOKE))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--plan-cell", action="store_true",
                        help="the plan's estimate of one training cell beside that cell run and timed, instead")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fersr-bench-") as tmp:
        config = tconfig.load(args.config, [f"out={tmp}", *args.overrides])
        if args.plan_cell:
            for line in plan_cell(config):
                print(line)
            return
        study = phases.Study(config, progress=False)
        study.prepare()
        study.load_faces()
        fold = study.folds[(config.protocol.only_folds or (0,))[0]]
        train, val = study.split(fold.train, Condition()), study.split(fold.val, Condition())
        arch = next(m for m in config.train.models if m in tconfig.TRAINABLE)
        print(f"device {study.device}, torch threads {torch.get_num_threads()}, {arch} at "
              f"{config.train.input_size} px, batch {config.train.batch}, {len(train.labels)} training faces")
        print("workers  images/s (per epoch)          data wait share")
        for workers in (int(w) for w in args.workers.split(",")):
            train_config = tconfig.TrainConfig(**{**vars(config.train), "workers": workers, "epochs": args.epochs,
                                                  "patience": 0})
            torch.manual_seed(0)
            model = engine.build_model(arch, config.train.pretrained)
            result = engine.fit(model, arch, train, val, train_config, study.device,
                                Path(tmp) / f"bench-{workers}.pt", progress=False)
            rates = ", ".join(f"{h['images_per_s']:.1f}" for h in result.history)
            waits = ", ".join(f"{100 * h['data_wait']:.1f} %" for h in result.history)
            print(f"{workers:>7}  {rates:<30}  {waits}")
        restored = [Condition(w, r) for w in config.phases.widths for r in study.restorers]
        if not restored:
            print("no restorer in the config: cache benchmark skipped")
            return
        faces = study.split(fold.test, Condition()).crops
        keys = [study.keys[i] for i in study.faceset.index(fold.test)]
        cache_root = Path(tmp) / "bench-cache"
        for label in ("cold", "warm"):
            cache = RestorationCache(cache_root, config.phases.degrade, study.device, config.cache.batch, False)
            start = time.perf_counter()
            for condition in restored:
                cache.fill(condition, faces, keys)
                cache.load(condition, faces, keys)
            seconds = time.perf_counter() - start
            print(f"restoration cache {label}: {cache.calls} restorer calls, {cache.restored} faces restored, "
                  f"{len(restored) * len(keys)} faces served, {seconds:.2f} s")


def plan_cell(config: tconfig.StudyConfig) -> list[str]:
    """The plan's estimate of the study's first training cell beside that cell run through the study and timed.

    Timed apart, and outside the cell as the plan counts it: the study's start-up (data generated or read,
    splits, faces cut), the per-item costs measured (:func:`plan.measure`) and the restoration cache filled (the
    plan counts cutting and restoring apart from the cells); the report is not written.

    Returns:
        The lines to print: the cell, a table of plan vs measured seconds (epochs, tests, the rest of the cell,
        the whole cell) with measured/plan, the cell's accuracy, and what lies outside.
    """
    start = time.perf_counter()
    study = phases.Study(config, progress=False)
    study.prepare()
    study.load_faces()
    startup_s = time.perf_counter() - start
    start = time.perf_counter()
    costs, _ = plan.measure(config)  # before the cell: its first steps find the kernels warm, as later cells do
    measured_s = time.perf_counter() - start
    start = time.perf_counter()
    study.restore_all()
    restore_s = time.perf_counter() - start
    cells = study.cells()
    grid = plan.count(config)  # the same cells, in the same order
    i = next(i for i, work in enumerate(grid.cells) if work.epochs)
    (cell, tests), work = cells[i], grid.cells[i]
    start = time.perf_counter()
    parts = study.run_cell(cell, tests)
    whole_s = time.perf_counter() - start
    folder = cell.folder(study.folder)
    fit = json.loads((folder / "fit.json").read_text())
    accuracy = {t.tag: json.loads(phases.result_file(folder, t).read_text())["accuracy"] for t in tests}
    epochs_s = sum(h["seconds"] for h in fit["history"])
    planned = plan.cell_parts(work, costs)
    measured = {"epochs": epochs_s, "tests": parts["test"], "rest": whole_s - epochs_s - parts["test"]}
    lines = [f"plan vs one measured cell on {costs.device} (torch threads {torch.get_num_threads()}): {cell.model}, "
             f"arm {cell.arm}, trained on {cell.train.tag}, fold {cell.fold}, seed {cell.seed}, {cell.align} faces",
             f"  {work.epochs} epochs of {work.train_images} training + {work.val_images} validation faces; "
             f"{len(tests)} tests of {work.test_images // len(tests)} faces ({work.test_images} test images)",
             *_plan_table(planned, measured, whole_s),
             f"accuracy: validation {fit['best_val_acc']:.3f} (best epoch {fit['best_epoch'] + 1} of "
             f"{len(fit['history'])}); test " + ", ".join(f"{tag} {a:.3f}" for tag, a in accuracy.items()),
             "rest of the cell (not in the plan): the training faces loaded, the model built, a checkpoint after each "
             "epoch, the model exported and loaded back as a classifier",
             f"outside the cell (timed, not in the plan's cell estimate): start-up (data generated or read, splits, "
             f"faces cut) {startup_s:.1f} s, costs measured {measured_s:.1f} s, restoration cache filled "
             f"{restore_s:.1f} s; not run: the report, its figures and quality metrics"]
    return lines


def _plan_table(planned: dict[str, float], measured: dict[str, float], whole_s: float) -> list[str]:
    """Rows of plan vs measured seconds and their ratio: epochs, tests, the rest of the cell, the whole cell."""
    def ratio(m: float, p: float) -> str:
        return f"{m / p:.2f}" if p > 0 else "-"

    rows = [("epochs (train + validate)", planned["epochs"], measured["epochs"]),
            ("tests", planned["tests"], measured["tests"]), ("rest of the cell", 0.0, measured["rest"]),
            ("whole cell", sum(planned.values()), whole_s)]
    lines = [f"{'part':<26}  {'plan s':>8}  {'measured s':>10}  {'measured/plan':>13}"]
    for label, p, m in rows:
        lines.append(f"{label:<26}  {f'{p:.2f}' if p > 0 else '-':>8}  {m:>10.2f}  {ratio(m, p):>13}")
    return lines


if __name__ == "__main__":
    main()
