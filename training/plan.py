"""``fersr-train plan``: how big a study's grid is and how many hours it takes on 1, 4 or 16 workers.

The grid is counted from the study's own cell list (:meth:`training.phases.Study.cells`) on the real dataset
and folds, so it is what ``run`` would do. The per-item costs are measured here, on this machine's device:
one training step per model on a small batch, one test forward per model, one face restored per restorer (a
random-init network of the real size when the weights are not cached: same cost, other numbers), and the faces
of a few images cut (read, detect where the detector runs, crop).

:func:`estimate` turns counts and costs into hours for a number of workers (processes or GPUs, each as fast as
this machine's device). What it assumes, i.e. what splits across workers:

- training cells (a model, training condition, fold and seed, with its evaluations) are independent: each runs
  whole on one worker, longest first onto the least loaded worker (the makespan of that schedule);
- restorations split evenly over the workers by face (as ``--shard`` and ``torchrun`` ranks do);
- faces are cut once, on one worker, before anything else (not split).

Training time is an upper bound: every cell is counted for its full ``train.epochs``, and early stopping
(``train.patience``) may end it sooner. Data loading and augmentation are not timed (``python -m training.bench``
shows their share).
"""

from __future__ import annotations

import dataclasses
import heapq
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import config as tconfig
from .config import StudyConfig

WORKERS = (1, 4, 16)


@dataclass(frozen=True)
class CellWork:
    """One training cell's work, in images.

    Attributes:
        train_images, val_images: per epoch (0 for a zero-shot model, which is not trained).
        test_images: over all its evaluations (test faces x test conditions).
    """

    model: str
    arm: str
    train_images: int
    val_images: int
    test_images: int
    epochs: int


@dataclass(frozen=True)
class Grid:
    """What a study runs: its axes and the counts that cost time."""

    models: tuple[str, ...]
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    arms: tuple[str, ...]
    widths: tuple[int, ...]
    restorers: tuple[str, ...]  # tags
    cells: tuple[CellWork, ...]
    evaluations: int  # test runs (one per cell and test condition)
    restorations: dict[str, int] = field(default_factory=dict)  # faces restored per restorer tag
    images: int = 0  # images whose face is cut
    detect: int = 0  # of them, images the detector runs on

    @property
    def training_cells(self) -> int:
        return sum(1 for c in self.cells if c.epochs)

    @property
    def test_images(self) -> int:
        return sum(c.test_images for c in self.cells)


@dataclass(frozen=True)
class Costs:
    """Seconds per item on one worker.

    Attributes:
        train: per model, one training image (forward, backward, optimizer step; at ``train.input_size``).
        test: per model, one test or validation image (preprocessing and forward).
        restore: per restorer tag, one face.
        cut: one image's face cut (read, detect where the detector runs, crop).
    """

    device: str
    train: dict[str, float]
    test: dict[str, float]
    restore: dict[str, float]
    cut: float


# ------------------------------------------------------------------------------------------------ counting
def count(config: StudyConfig) -> Grid:
    """The grid of ``config`` on its dataset (loaded, and split as ``run`` splits it)."""
    from . import faces, phases, splits

    study = phases.Study(config, progress=False)
    study.dataset = phases.load_dataset(config)
    study.dataset.require_complete()
    study.folds = splits.make(study.dataset, config.protocol)
    cells = study.cells()
    work = []
    for cell, tests in cells:
        fold = study.folds[cell.fold]
        epochs = 0 if cell.arm == "zero-shot" else config.train.epochs
        work.append(CellWork(cell.model, cell.arm, len(fold.train) if epochs else 0, len(fold.val) if epochs else 0,
                             len(fold.test) * len(tests), epochs))
    restorations = dict.fromkeys((spec.tag for spec in study.restorers), 0)
    for align in dict.fromkeys(cell.align for cell, _ in cells):  # the ablation's faces are restored too
        framed = [(cell, tests) for cell, tests in cells if cell.align == align]
        needed = {t for cell, tests in framed for t in (*tests, cell.train) if t.restorer is not None}
        wanted = len(study.restored_keys(align))
        for condition in needed:
            restorations[condition.restorer.tag] += wanted
    detect = faces.crop_mode(config.faces, study.dataset) == "detect"
    return Grid(models=tuple(config.train.models), folds=tuple(sorted({c.fold for c, _ in cells})),
                seeds=tuple(config.protocol.seeds), arms=tuple(config.phases.arms),
                widths=tuple(config.phases.widths), restorers=tuple(s.tag for s in study.restorers),
                cells=tuple(work), evaluations=sum(len(tests) for _, tests in cells), restorations=restorations,
                images=len(study.dataset), detect=len(study.dataset) if detect else 0)


# ------------------------------------------------------------------------------------------------ estimate
def cell_parts(cell: CellWork, costs: Costs) -> dict[str, float]:
    """One training cell's seconds on one worker: ``epochs`` (training and validation) and ``tests``."""
    per_epoch = cell.train_images * costs.train.get(cell.model, 0.0) + cell.val_images * costs.test[cell.model]
    return {"epochs": cell.epochs * per_epoch, "tests": cell.test_images * costs.test[cell.model]}


def cell_seconds(cell: CellWork, costs: Costs) -> float:
    """One training cell on one worker: its epochs of training and validation, then its evaluations."""
    return sum(cell_parts(cell, costs).values())


def makespan(durations: list[float], workers: int) -> float:
    """Seconds until the last of ``durations`` ends when each runs whole on one of ``workers``, longest first
    onto the least loaded worker."""
    loads = [0.0] * max(workers, 1)
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def estimate(grid: Grid, costs: Costs, workers: int) -> dict:
    """Hours of ``grid`` on ``workers`` workers, each as fast as the machine ``costs`` were measured on.

    Faces are cut once on one worker; restorations split evenly over the workers; training cells (with their
    evaluations) run whole on one worker each (see the module's docstring).

    Returns:
        {"workers", "cut_h", "restore_h", "cells_h", "total_h"}: the three stages run one after the other.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cut = grid.images * costs.cut
    restore = sum(n * costs.restore[tag] for tag, n in grid.restorations.items()) / workers
    cells = makespan([cell_seconds(c, costs) for c in grid.cells], workers)
    hours = {"cut_h": cut / 3600, "restore_h": restore / 3600, "cells_h": cells / 3600}
    return {"workers": workers, **hours, "total_h": sum(hours.values())}


# ------------------------------------------------------------------------------------------------ measuring
def _seconds(fn, device: torch.device, repeat: int = 2) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls after one untimed call (allocations, kernels)."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _batch(config: StudyConfig, device: torch.device) -> int:
    """The batch a cost is timed on: the study's own on a GPU; on a CPU, whose cost per image hardly depends on
    the batch once it holds a few images' pixels, about four 224 px images' worth (at most the study's)."""
    if device.type == "cuda":
        return config.train.batch
    return int(np.clip(round(4 * 224 ** 2 / config.train.input_size ** 2), 1, config.train.batch))


def train_cost(arch: str, config: StudyConfig, device: torch.device) -> float:
    """Seconds per training image of ``arch`` at ``train.input_size`` (random init: the cost is the same)."""
    from . import engine

    model = engine.build_model(arch, pretrained=False).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    n, size = _batch(config, device), config.train.input_size
    x = torch.randn(n, 3, size, size, device=device)
    y = torch.randint(0, 7, (n,), device=device)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _seconds(step, device) / n


def test_cost(arch: str, config: StudyConfig, device: torch.device) -> float:
    """Seconds per test image of ``arch``: the stream's classifier (preprocessing and forward) on crops of
    ``faces.size``; a zero-shot model is the shipped one."""
    from fersr_stream import classify
    from fersr_stream.classify.labels import Emotion
    from fersr_stream.crops import HostCrops

    from . import engine

    n = _batch(config, device)
    if arch in tconfig.ZERO_SHOT:
        classifier = classify.load(None, device)
    else:
        model = engine.build_model(arch, pretrained=False)
        classifier = classify.Classifier(model.to(device).eval(), arch, tuple(Emotion),
                                         engine.preprocessing(config.train.input_size), device, batch=n)
    crops = HostCrops(np.random.default_rng(0).integers(0, 256, (n, config.faces.size, config.faces.size, 3),
                                                        np.uint8))
    return _seconds(lambda: classifier.classify(crops), device) / n


def _network_file(spec, folder: Path) -> tuple[str | None, bool]:
    """(weights to load, whether they are a random stand-in): the configured weights when cached, else a
    random-init network of the released size written into ``folder``."""
    from fersr_stream.enhance import ENHANCERS
    from fersr_stream.errors import FersrError
    from fersr_stream.testing import random_weights
    from fersr_stream.weights import store

    default = ENHANCERS.get(spec.name).default_weights
    if default is None:  # bicubic: no network
        return spec.weights, False
    try:
        store.ensure(spec.weights or default, download=False)
        return spec.weights, False
    except FersrError:
        save = {"gfpgan": random_weights.save_gfpgan,
                "codeformer": lambda p: random_weights.save_codeformer(p, full=True),
                "restoreformer": lambda p: random_weights.save_restoreformer(p, full=True)}[spec.name]
        return str(save(folder / f"{spec.name}.pth")), True


def restore_cost(spec, config: StudyConfig, device: torch.device, folder: Path) -> tuple[float, bool]:
    """(seconds per face restored by ``spec`` from the smallest width, whether a random stand-in was timed)."""
    from fersr_stream import enhance
    from fersr_stream.config import EnhanceConfig
    from fersr_stream.crops import HostCrops

    weights, stand_in = _network_file(spec, folder)
    n = config.cache.batch if device.type == "cuda" else 1
    enhancer = enhance.create(EnhanceConfig(name=spec.name, weights=weights, fidelity=spec.fidelity, batch=n),
                              device)
    width = min(config.phases.widths)
    low = HostCrops(np.random.default_rng(0).integers(0, 256, (n, width, width, 3), np.uint8))
    seconds = _seconds(lambda: enhancer.enhance(low).resize(config.faces.size, "area").host(), device, repeat=1)
    return seconds / n, stand_in


def cut_cost(dataset, config: StudyConfig, device: torch.device, folder: Path, n: int = 8) -> float:
    """Seconds per image to cut its face as ``run`` does (read, detect where it runs, crop), on ``n`` of its
    images (the detector's set-up is shared by the ``n``)."""
    from . import faces

    subset = dataclasses.replace(dataset, samples=dataset.samples[:n])
    calls = iter(range(1000))
    seconds = _seconds(lambda: faces.crop_dataset(subset, config.faces, folder / f"cut{next(calls)}", device,
                                                  progress=False), device, repeat=1)
    return seconds / len(subset.samples)


def measure(config: StudyConfig, say=lambda what: None) -> tuple[Costs, list[str]]:
    """Time every per-item cost of ``config``'s grid on its device; returns the costs and the restorer tags
    timed with a random stand-in network. ``say(what)`` is called before each timing (minutes on a CPU)."""
    from fersr_stream import device as fdevice

    from . import phases

    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = fdevice.resolve(config.device)
    torch.manual_seed(0)
    train, test = {}, {}
    for m in config.train.models:
        say(f"timing {m} training and testing on {device}")
        if m in tconfig.TRAINABLE:
            train[m] = train_cost(m, config, device)
        test[m] = test_cost(m, config, device)
    restore, stand_ins = {}, []
    with tempfile.TemporaryDirectory(prefix="fersr-plan-") as tmp:
        for spec in (tconfig.parse_restorer(r) for r in config.phases.restorers):
            say(f"timing {spec.tag} restoration on {device}")
            restore[spec.tag], random = restore_cost(spec, config, device, Path(tmp))
            stand_ins += [spec.tag] if random else []
            (Path(tmp) / f"{spec.name}.pth").unlink(missing_ok=True)
        say(f"timing face cutting on {device}")
        cut = cut_cost(phases.load_dataset(config), config, device, Path(tmp))
    return Costs(str(device), train, test, restore, cut), stand_ins


# ------------------------------------------------------------------------------------------------ printing
def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.0f} s"
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"


def describe(grid: Grid, costs: Costs, workers: tuple[int, ...] = WORKERS, stand_ins: tuple = ()) -> list[str]:
    """The lines ``fersr-train plan`` prints: the grid, the measured costs, and the estimate per worker count."""
    train_epochs = sum(c.train_images * c.epochs for c in grid.cells)
    lines = [f"grid: models {', '.join(grid.models)}; folds {list(grid.folds)}; seeds {list(grid.seeds)}; arms "
             f"{', '.join(grid.arms)}; widths {', '.join(map(str, grid.widths))} px; restorers "
             f"{', '.join(grid.restorers) or 'none'}",
             f"  training cells {grid.training_cells} (+ {len(grid.cells) - grid.training_cells} zero-shot), "
             f"evaluations {grid.evaluations}, test images {grid.test_images:,} (test faces x conditions)",
             f"  training image-epochs {train_epochs:,} (training images x epochs, at most: early stopping may stop "
             "sooner)",
             f"  restorations {sum(grid.restorations.values()):,}"
             + "".join(f", {t} {n:,}" for t, n in grid.restorations.items()),
             f"  images to cut {grid.images:,}, to detect {grid.detect:,}",
             f"measured on {costs.device} (torch threads {torch.get_num_threads()}), seconds per item:"]
    lines += [f"  train {m}: {s:.4f} per image; test {m}: {costs.test[m]:.4f}" for m, s in costs.train.items()]
    lines += [f"  test {m} (zero-shot): {s:.4f} per image" for m, s in costs.test.items() if m not in costs.train]
    lines += [f"  restore {t}: {s:.4f} per face" + (" (random-init network of the real size: weights not cached)"
                                                    if t in stand_ins else "") for t, s in costs.restore.items()]
    lines += [f"  cut a face: {costs.cut:.4f} per image",
              "estimate (each worker as fast as this device):",
              f"  {'workers':>7}  {'cut':>9}  {'restore':>9}  {'train+test':>10}  {'total':>9}"]
    for n in workers:
        e = estimate(grid, costs, n)
        lines.append(f"  {n:>7}  {_hours(e['cut_h']):>9}  {_hours(e['restore_h']):>9}  {_hours(e['cells_h']):>10}"
                     f"  {_hours(e['total_h']):>9}")
    lines.append("assumed: training cells run whole, one per worker (longest first); restorations split evenly "
                 "over workers; faces cut once on one worker; stages one after the other")
    return lines
