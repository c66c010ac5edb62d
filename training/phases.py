"""The study grid: folds x models x training arms, each trained once and tested under every condition.

Phases (the arm ``hr``): (1) train on HR faces, test on HR; (2) test that model on LR faces at each width;
(3) restore the LR faces with each restorer and test again. Extension arms train and test on the same
condition: ``lr`` (LR at each width) and ``restored`` (each width x restorer). ``mini_xception`` is the shipped
FER2013 model, tested zero-shot under every phase-1/2/3 condition.

Layout of an experiment folder::

    config.yaml  run.json  grid.json  data.json  images.json  persons.json  splits.json  faces.json
    cells/<model>/<align>/train-<condition>/fold<k>[-seed<s>]/{model.safetensors, fit.json, test-<condition>.json}
    results.csv  results.md  per_class.csv  mcnemar.csv  hypothesis.csv  quality.csv  quality/  faces_by_view.csv
    ablation.csv  breakdown/  figures/  REPORT.md

``<align>`` is how the faces were framed (``landmarks`` or ``box``, see :mod:`training.faces`): the main run's
``faces.align``, and the alignment ablation (``ablation.*``: the ``hr`` arm of a few models trained and tested
again on faces framed the other way).

A cell whose output exists is skipped, so a rerun finishes what a killed run left; a training cell resumes
from its epoch checkpoint (``train_state.pt``, removed once the model is exported).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fersr_stream import classify, detect, enhance
from fersr_stream import device as fdevice
from fersr_stream.classify.checkpoint import save_checkpoint
from fersr_stream.classify.labels import KDEF_CODES, Emotion
from fersr_stream.config import DetectConfig, EnhanceConfig
from fersr_stream.crops import HostCrops
from fersr_stream.errors import ConfigError
from fersr_stream.weights.registry import Preprocessing

from . import config as tconfig
from . import breakdown, engine, faces, kdef, layouts, quality, report, splits, stats, synthetic
from .cache import Condition, RestorationCache, face_keys
from .config import StudyConfig, parse_restorer
from .dataset import Dataset


@dataclass(frozen=True)
class TrainCell:
    model: str
    train: Condition  # what the model is trained (and validated) on
    arm: str  # hr | lr | restored | zero-shot
    fold: int
    seed: int = 0  # the training seed (protocol.seeds)
    align: str = "landmarks"  # how its faces are framed: landmarks | box

    def folder(self, root: Path) -> Path:
        """``cells/<model>/<align>/train-<condition>/fold<k>``; a seed other than 0 adds ``-seed<s>`` (seed 0 keeps
        the folder it had before seeds were a key, so the paths of a one-seed study stay as documented)."""
        run = f"fold{self.fold}" + (f"-seed{self.seed}" if self.seed else "")
        return root / "cells" / self.model / self.align / f"train-{self.train.tag}" / run


def phase_of(arm: str, test: Condition) -> str:
    """The phase a (training arm, test condition) pair belongs to: 1, 2, 3, or the extension arm's name."""
    if arm in ("hr", "zero-shot"):
        return "1" if test.width is None else ("2" if test.restorer is None else "3")
    return f"ext-{arm}"


def synthetic_root(config: StudyConfig) -> Path:
    """Where a synthetic dataset is (or is drawn): ``data.root``, else ``synthetic-kdef`` beside the run folders."""
    return Path(config.data.root) if config.data.root else config.folder.parent / "synthetic-kdef"


def load_dataset(config: StudyConfig, dist_: engine.Dist | None = None) -> Dataset:
    """The configured dataset; a synthetic one is generated (by rank 0) into ``data.root`` when absent.

    A synthetic set is written only into a new or empty folder, and only a tree it wrote is read back as one: a
    dataset of the user's is never written to, nor trained on under the synthetic label.
    """
    data = config.data
    if data.kind == "synthetic":
        root = synthetic_root(config)
        synthetic.claim(root)
        if not (root / "KDEF").is_dir() and (dist_ is None or dist_.main):
            synthetic.write(root, data.synth_people, data.synth_width, data.synth_seed)
        if dist_ is not None:
            dist_.barrier()
        return kdef.load(root, data.angles, data.sessions)
    return layouts.load(data)


class Study:
    """One experiment, validated before anything is written (see :meth:`prepare`)."""

    def __init__(self, config: StudyConfig, progress: bool = True):
        self.config = config
        self.progress = progress
        self.folder = config.folder
        self.device = fdevice.resolve(config.device)
        self.dist = engine.Dist()
        self.dataset: Dataset | None = None
        self.folds: list[splits.Fold] = []
        self.restorers = [parse_restorer(r) for r in config.phases.restorers]
        self.faceset: faces.FaceSet | None = None  # set by load_faces(), with keys and cache: the main alignment's
        self.keys: list[str] = []
        self.facesets: dict[str, faces.FaceSet] = {}  # every alignment's (main and ablation), and their keys
        self.keysets: dict[str, list[str]] = {}
        self.cache: RestorationCache | None = None
        self.metrics: tuple[tuple[str, ...], dict] = ((), {})  # quality metrics measured, and those skipped

    # -------------------------------------------------------------------------------------- validation
    def prepare(self) -> None:
        """Check data, splits, weights and any earlier run in the folder; raise a FersrError on the first problem."""
        c = self.config
        if c.train.threads:
            torch.set_num_threads(c.train.threads)
        self.dist = engine.init_distributed(self.device)
        self.dataset = load_dataset(c, self.dist)
        self.dataset.require_complete()
        self.folds = splits.make(self.dataset, c.protocol)
        if c.train.pretrained:
            for arch in c.train.models:
                if arch in tconfig.TRAINABLE:
                    engine.imagenet_weights(arch)
        if faces.crop_mode(c.faces, self.dataset) == "detect":
            detect.fetch(DetectConfig(name=c.faces.detector))
        for spec in self.restorers:
            enhance.fetch(EnhanceConfig(name=spec.name, weights=spec.weights))
        run_json = self.folder / "run.json"
        if run_json.is_file():
            earlier = json.loads(run_json.read_text())
            if earlier.get("fingerprint") != tconfig.fingerprint(c, self.dist.world):
                differ = tconfig.differences(earlier.get("settings", {}),
                                             tconfig.fingerprinted(c, self.dist.world))
                which = f" ({', '.join(differ)} differ)" if differ else ""
                raise ConfigError(f"{self.folder} holds a run with other data/faces/protocol/train settings{which}; "
                                  "choose another name (--set name=...) or out folder")
            saved = self.folder / "splits.json"
            if saved.is_file() and splits.load(saved) != self.folds:
                raise ConfigError(f"the dataset's images differ from the run in {self.folder} (splits changed); "
                                  "use a new experiment name")

    def _write_header(self) -> None:
        c = self.config
        self.folder.mkdir(parents=True, exist_ok=True)
        tconfig.save(c, self.folder / "config.yaml")
        _write_json(self.folder / "run.json", {"fingerprint": tconfig.fingerprint(c, self.dist.world),
                                               "settings": tconfig.fingerprinted(c, self.dist.world),
                                               "world_size": self.dist.world,
                                               "device": str(self.device), "torch": torch.__version__})
        _write_json(self.folder / "data.json", self.dataset.summary())
        _write_json(self.folder / "images.json", breakdown.image_table(self.dataset))  # per-angle breakdowns
        _write_json(self.folder / "persons.json", stats.persons(self.dataset))
        splits.save(self.folds, c.protocol, self.folder / "splits.json")
        # what this config runs, so that a report of a stopped run can say how much of it is done
        _write_json(self.folder / "grid.json", {"results": [
            result_file(cell.folder(self.folder), test).relative_to(self.folder).as_posix()
            for cell, tests in self.cells() for test in tests]})

    # ---------------------------------------------------------------------------------------- the grid
    @property
    def align(self) -> str:
        """How the main run's faces are framed: ``faces.align`` where a detector runs, else box (no landmarks)."""
        detected = faces.crop_mode(self.config.faces, self.dataset) == "detect"
        return self.config.faces.align if detected else "box"

    def ablation_aligns(self) -> list[str]:
        """The ablation's alignments: ``ablation.align`` less the main one; none without a detector (every face
        is then a box crop)."""
        if self.align != self.config.faces.align:
            return []
        return [a for a in dict.fromkeys(self.config.ablation.align) if a != self.align]

    def ablation_conditions(self) -> list[Condition]:
        """The ablation's test conditions: HR, and LR and each restorer at ``ablation.widths``."""
        out = [Condition()]
        for w in self.config.ablation_widths:
            out += [Condition(w)] + [Condition(w, r) for r in self.restorers]
        return out

    def conditions(self) -> list[Condition]:
        """Every test condition of phases 1-3: HR, LR per width, and LR + restorer per width."""
        out = [Condition()]
        for w in self.config.phases.widths:
            out.append(Condition(w))
            out += [Condition(w, r) for r in self.restorers]
        return out

    def cells(self) -> list[tuple[TrainCell, list[Condition]]]:
        """(training cell, its test conditions) for every fold, seed, model and arm, in run order.

        A zero-shot model is not trained, so it runs once per fold (under the first seed).
        """
        c = self.config
        folds = c.protocol.only_folds if c.protocol.only_folds is not None else range(len(self.folds))
        out = []
        main = self.align
        for k in folds:
            for seed in c.protocol.seeds:
                for model in c.train.models:
                    if model in tconfig.ZERO_SHOT:
                        if seed == c.protocol.seeds[0]:
                            out.append((TrainCell(model, Condition(), "zero-shot", k, seed, main), self.conditions()))
                        continue
                    out += self._arm_cells(model, k, seed)
                for align in self.ablation_aligns():
                    out += [(TrainCell(model, Condition(), "zero-shot" if model in tconfig.ZERO_SHOT else "hr", k,
                                       seed, align), self.ablation_conditions()) for model in c.ablation_models]
        return out

    def _arm_cells(self, model: str, fold: int, seed: int) -> list[tuple[TrainCell, list[Condition]]]:
        """The training cells of one trainable model, fold and seed: one per arm (per width and restorer)."""
        out, main = [], self.align
        for arm in self.config.phases.arms:
            if arm == "hr":
                out.append((TrainCell(model, Condition(), "hr", fold, seed, main), self.conditions()))
            for w in self.config.phases.widths:
                if arm == "lr":
                    out.append((TrainCell(model, Condition(w), "lr", fold, seed, main), [Condition(w)]))
                if arm == "restored":
                    out += [(TrainCell(model, Condition(w, r), "restored", fold, seed, main), [Condition(w, r)])
                            for r in self.restorers]
        return out

    # ------------------------------------------------------------------------------------------ running
    def run(self, executor=None) -> Path:
        """Run every unfinished cell, then write the report; returns the experiment folder. ``executor``: runs
        the cache filling and the cells elsewhere (:class:`training.cluster.RayExecutor`); None runs them here."""
        if self.dataset is None:
            self.prepare()
        self.metrics = quality.ready(self.config.quality, quiet=not self.progress)  # before anything is written
        if self.dist.main:
            self._write_header()
        if executor is not None:
            self.load_faces()  # cropped once, into the shared cache, before the tasks read them
            executor.run(self)
        else:
            self.restore_all((self.dist.rank, self.dist.world))
            self.dist.barrier()
            for cell, tests in self.cells():
                self.run_cell(cell, tests)
                self.dist.barrier()
        if self.dist.main:
            self._examples()
            quality.measure(self, *self.metrics)
            report.write(self.folder)
        self.dist.barrier()
        return self.folder

    def _examples(self) -> None:
        """figures/examples_w<W>.png: one test face per emotion as HR, LR and each restorer's output (drawn again
        on every run, from the cache, so that it shows the restorers of the current config)."""
        folds = self.config.protocol.only_folds or (0,)
        test = self.folds[folds[0]].test
        by_emotion: dict[int, int] = {}
        for i in self.faceset.index(test):
            sample = self.dataset.samples[i]
            label = int(self.faceset.labels[i])
            kept = self.dataset.samples[by_emotion[label]] if label in by_emotion else None
            if kept is None or (sample.angle == "S" and kept.angle != "S"):
                by_emotion[label] = int(i)
        idx = [by_emotion[k] for k in sorted(by_emotion)]
        crops = np.asarray(self.faceset.crops[idx])
        keys = [self.keys[i] for i in idx]
        for width in self.config.report.example_widths:
            path = self.folder / "figures" / f"examples_w{width}.png"
            shown = [Condition(), Condition(width)] + [Condition(width, r) for r in self.restorers]
            for condition in shown[2:]:
                self.cache.fill(condition, crops, keys)
            images = [self.cache.load(condition, crops, keys) for condition in shown]
            rows = [(KDEF_CODES[int(self.faceset.labels[i])], [im[j] for im in images]) for j, i in enumerate(idx)]
            columns = ["HR", f"LR {width} px ({self.config.phases.degrade.interpolation})"] + \
                [r.tag for r in self.restorers]
            report.example_grid(path, rows, columns)

    def load_faces(self) -> None:
        """Crop (or read from the cache) every face, key them, and open the restoration cache."""
        if self.dataset is None:
            self.prepare()
        if self.faceset is not None:
            return
        c = self.config
        for turn in ("main", "others"):  # rank 0 cuts (and caches) first, the other ranks read its cache
            if self.dist.main == (turn == "main"):
                for align in [self.align] + self.ablation_aligns():
                    framed = dataclasses.replace(c.faces, align=align) if align != self.align else c.faces
                    self.facesets[align] = faces.crop_dataset(self.dataset, framed, c.cache_dir, self.device,
                                                              self.progress and self.dist.main)
            if turn == "main":
                self.dist.barrier()
        self.keysets = {align: face_keys(found.crops) for align, found in self.facesets.items()}
        self.faceset, self.keys = self.facesets[self.align], self.keysets[self.align]
        self.cache = RestorationCache(c.cache_dir, c.phases.degrade, self.device, c.cache.batch,
                                      self.progress and self.dist.main)
        if self.dist.main and self.folder.is_dir():
            _write_json(self.folder / "faces.json", faces_summary(self.faceset, self.dataset.framing,
                                                                  c.faces.detector, self.dataset))

    def restore_all(self, shard: tuple[int, int] = (0, 1)) -> dict[str, dict]:
        """Fill the restoration cache for every restored condition the grid needs (this shard's faces)."""
        self.load_faces()
        counts = {}
        for align, found in self.facesets.items():
            cells = [(cell, tests) for cell, tests in self.cells() if cell.align == align]
            wanted = sorted(set(found.index(sorted(self.restored_keys(align))).tolist()))
            crops = np.asarray(found.crops[wanted])
            keys = [self.keysets[align][i] for i in wanted]
            prefix = "" if align == self.align else f"{align}/"  # the ablation's faces, framed the other way
            needed = {t for _, tests in cells for t in tests if t.restorer is not None}
            for condition in dict.fromkeys(t for t in self.conditions() + self.ablation_conditions() if t in needed):
                counts[prefix + condition.tag] = self.cache.fill(condition, crops, keys, shard)
        return counts

    def restored_keys(self, align: str | None = None) -> set[str]:
        """Sample keys whose faces the grid needs restored (at every width, by every restorer), of the cells framed
        by ``align`` (default: every cell): a cell's test fold when a test restores, plus its training part when
        it trains on restored faces."""
        need: set[str] = set()
        for cell, tests in self.cells():
            if align is not None and cell.align != align:
                continue
            fold = self.folds[cell.fold]
            if any(t.restorer is not None for t in tests):
                need.update(fold.test)
            if cell.train.restorer is not None:
                need.update(fold.train + fold.val)
        return need

    def split(self, keys: tuple[str, ...], condition: Condition, align: str | None = None) -> engine.Split:
        """The faces of ``keys`` as shown under ``condition`` (HR, LR or restored), with their labels; framed by
        ``align`` (default: the main run's)."""
        align = align or self.align
        found, face_ids = self.facesets[align], self.keysets[align]
        idx = found.index(keys)
        crops = np.asarray(found.crops[idx])
        shown = self.cache.load(condition, crops, [face_ids[i] for i in idx])
        return engine.Split(shown, found.labels[idx])

    def run_cell(self, cell: TrainCell, tests: list[Condition]) -> dict[str, float]:
        """Train (or resume, or reuse) the cell's model, then write each of its tests not written yet.

        Returns:
            Wall seconds on this rank: ``model`` (the model trained, from loading its training faces to its export,
            then loaded as a classifier; only the loading for a zero-shot or finished model) and ``test`` (each
            test's faces loaded, degraded or read from the cache, and classified); both 0 when every test was
            written already.
        """
        seconds = {"model": 0.0, "test": 0.0}
        folder = cell.folder(self.folder)
        todo = [t for t in tests if not result_file(folder, t).is_file()]
        if not todo:
            return seconds
        fold = self.folds[cell.fold]
        start = time.perf_counter()
        if cell.arm == "zero-shot":
            classifier = classify.load(None, self.device) if self.dist.main else None
        else:
            weights = self._train(cell, folder, fold)
            classifier = classify.load(weights, self.device) if self.dist.main else None
        seconds["model"] = time.perf_counter() - start
        if not self.dist.main:
            return seconds
        start = time.perf_counter()
        for test in todo:
            split = self.split(fold.test, test, cell.align)
            probs = classifier.classify(HostCrops(np.ascontiguousarray(split.crops)))
            _write_json(result_file(folder, test), metrics(cell, test, fold.test, split.labels, probs))
        seconds["test"] = time.perf_counter() - start
        return seconds

    def _framing(self, cell: TrainCell, preprocessing: Preprocessing) -> Preprocessing:
        """``preprocessing`` with the framing of the cell's training faces, which the stream's crop stage then
        follows (:func:`fersr_stream.pipeline.stages.crop.framing`); none where the images were the faces
        (``faces.crop`` none: the stream keeps its own)."""
        if faces.crop_mode(self.config.faces, self.dataset) == "none":
            return preprocessing
        return dataclasses.replace(preprocessing, align=cell.align, margin=self.config.faces.margin)

    def _train(self, cell: TrainCell, folder: Path, fold: splits.Fold) -> Path:
        """Train (or resume, or reuse) the cell's model; returns the exported checkpoint."""
        target = folder / "model.safetensors"
        if target.is_file():
            return target
        c = self.config
        folder.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        torch.manual_seed(cell.seed * 1009 + cell.fold)  # the same random head (and body) on every rank
        model = engine.build_model(cell.model, c.train.pretrained)
        result = engine.fit(model, cell.model, self.split(fold.train, cell.train, cell.align),
                            self.split(fold.val, cell.train, cell.align), c.train, self.device,
                            folder / "train_state.pt", self.dist,
                            desc=f"{cell.model} {cell.align} {cell.train.tag} fold {cell.fold} seed {cell.seed}",
                            progress=self.progress, seed=cell.seed)
        if self.dist.main:
            model.load_state_dict(result.state)
            _write_json(folder / "fit.json", {"best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
                                              "history": result.history})
            framing = self._framing(cell, engine.preprocessing(c.train.input_size))
            # the model file is written last: its presence marks a finished training cell
            save_checkpoint(target, model, cell.model, tuple(Emotion), framing, source="fersr-train",
                            dataset=self.dataset.kind, fold=str(cell.fold), train_condition=cell.train.tag,
                            seed=str(cell.seed), best_epoch=str(result.best_epoch),
                            val_accuracy=f"{result.best_val_acc:.4f}", split=c.protocol.split)
            (folder / "train_state.pt").unlink(missing_ok=True)
        self.dist.barrier()
        return target


def metrics(cell: TrainCell, test: Condition, keys: tuple[str, ...], labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, per-class accuracy, confusion matrix and per-image predictions of one evaluation cell."""
    preds = probs.argmax(1)
    confusion = np.zeros((7, 7), np.int64)
    np.add.at(confusion, (labels, preds), 1)
    per_class = {code: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, code in enumerate(KDEF_CODES)}
    return {"model": cell.model, "arm": cell.arm, "align": cell.align, "fold": cell.fold, "seed": cell.seed,
            "train": cell.train.tag, "test": test.tag, "phase": phase_of(cell.arm, test), "width": test.width,
            "restorer": test.restorer_name,
            "n": int(len(labels)), "accuracy": float((preds == labels).mean()), "per_class": per_class,
            "confusion": confusion.tolist(), "keys": list(keys), "labels": labels.tolist(), "preds": preds.tolist()}


def faces_summary(faceset: faces.FaceSet, framing: str, detector: str, dataset: Dataset | None = None) -> dict:
    """faces.json: how the faces were cut, each face's cut (``cut``) and, where a detector ran, the images it found
    no face in; with ``dataset``, the count of each cut per KDEF view (``by_view``, see
    :func:`training.faces.by_view`)."""
    views = {"by_view": faces.by_view(faceset, dataset)} if dataset is not None and faceset.cut else {}
    if faceset.cut:
        views["cut"] = dict(zip(faceset.keys, faceset.cut))  # each face's: landmarks | detector_box | fallback_box
    if faceset.mode != "detect":
        return {"crop": faceset.mode, "detector": None, "align": "box", **views}
    missed = [k for k, found in zip(faceset.keys, faceset.detected) if not found]
    fallback = "KDEF's fixed box" if faces.uses_kdef_box("detect", framing) else "the image's centred square"
    return {"crop": "detect", "detector": detector, "align": faceset.align, "detected": int(faceset.detected.sum()),
            "not_detected": len(missed), "fallback": fallback, **views, "not_detected_keys": missed}


def result_file(folder: Path, test: Condition) -> Path:
    """Where a cell (its ``folder``) writes its result under ``test``; the file's presence marks that test done."""
    return folder / f"test-{test.tag}.json"


def _write_json(path: Path, blob: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(json.dumps(blob, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run(config: StudyConfig, progress: bool = True, executor=None) -> Path:
    """Validate, then run the whole study (here, or on ``executor``); returns the experiment folder."""
    study = Study(config, progress)
    study.prepare()
    return study.run(executor)

