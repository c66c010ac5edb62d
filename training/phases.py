"""The study grid: folds x models x training arms, each trained once and tested under every condition.

Phases (the arm ``hr``): (1) train on HR faces, test on HR; (2) test that model on LR faces at each width;
(3) restore the LR faces with each restorer and test again. Extension arms train and test on the same
condition: ``lr`` (LR at each width) and ``restored`` (each width x restorer). ``mini_xception`` is the shipped
FER2013 model, tested zero-shot under every phase-1/2/3 condition.

Layout of an experiment folder::

    config.yaml  run.json  data.json  splits.json
    cells/<model>/train-<condition>/fold<k>/{model.safetensors, fit.json, test-<condition>.json}
    results.csv  results.md  per_class.csv  mcnemar.csv  figures/  REPORT.md

A cell whose output exists is skipped, so a rerun finishes what a killed run left; a training cell resumes
from its epoch checkpoint (``train_state.pt``, removed once the model is exported).
"""

from __future__ import annotations

import json
import os
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

from . import config as tconfig
from . import engine, faces, kdef, layouts, report, splits, synthetic
from .cache import Condition, RestorationCache, face_keys
from .config import StudyConfig, parse_restorer
from .dataset import Dataset


@dataclass(frozen=True)
class TrainCell:
    model: str
    train: Condition  # what the model is trained (and validated) on
    arm: str  # hr | lr | restored | zero-shot
    fold: int

    def folder(self, root: Path) -> Path:
        return root / "cells" / self.model / f"train-{self.train.tag}" / f"fold{self.fold}"


def phase_of(arm: str, test: Condition) -> str:
    """The phase a (training arm, test condition) pair belongs to: 1, 2, 3, or the extension arm's name."""
    if arm in ("hr", "zero-shot"):
        return "1" if test.width is None else ("2" if test.restorer is None else "3")
    return f"ext-{arm}"


def load_dataset(config: StudyConfig, dist_: engine.Dist | None = None) -> Dataset:
    """The configured dataset; a synthetic one is generated (by rank 0) into ``data.root`` when absent.

    A synthetic set is written only into a new or empty folder, and only a tree it wrote is read back as one: a
    dataset of the user's is never written to, nor trained on under the synthetic label.
    """
    data = config.data
    if data.kind == "synthetic":
        root = Path(data.root) if data.root else config.folder.parent / "synthetic-kdef"
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
        self.faceset: faces.FaceSet | None = None  # set by load_faces(), with keys and cache
        self.keys: list[str] = []
        self.cache: RestorationCache | None = None

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
            if earlier.get("fingerprint") != tconfig.fingerprint(c):
                differ = tconfig.differences(earlier.get("settings", {}), tconfig.fingerprinted(c))
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
        _write_json(self.folder / "run.json", {"fingerprint": tconfig.fingerprint(c),
                                               "settings": tconfig.fingerprinted(c), "world_size": self.dist.world,
                                               "device": str(self.device), "torch": torch.__version__})
        _write_json(self.folder / "data.json", self.dataset.summary())
        splits.save(self.folds, c.protocol, self.folder / "splits.json")

    # ---------------------------------------------------------------------------------------- the grid
    def conditions(self) -> list[Condition]:
        """Every test condition of phases 1-3: HR, LR per width, and LR + restorer per width."""
        out = [Condition()]
        for w in self.config.phases.widths:
            out.append(Condition(w))
            out += [Condition(w, r) for r in self.restorers]
        return out

    def cells(self) -> list[tuple[TrainCell, list[Condition]]]:
        """(training cell, its test conditions) for every fold, model and arm, in run order."""
        c = self.config
        folds = c.protocol.only_folds if c.protocol.only_folds is not None else range(len(self.folds))
        out = []
        for k in folds:
            for model in c.train.models:
                if model in tconfig.ZERO_SHOT:
                    out.append((TrainCell(model, Condition(), "zero-shot", k), self.conditions()))
                    continue
                for arm in c.phases.arms:
                    if arm == "hr":
                        out.append((TrainCell(model, Condition(), "hr", k), self.conditions()))
                    for w in c.phases.widths:
                        if arm == "lr":
                            out.append((TrainCell(model, Condition(w), "lr", k), [Condition(w)]))
                        if arm == "restored":
                            out += [(TrainCell(model, Condition(w, r), "restored", k), [Condition(w, r)])
                                    for r in self.restorers]
        return out

    # ------------------------------------------------------------------------------------------ running
    def run(self, executor=None) -> Path:
        """Run every unfinished cell, then write the report; returns the experiment folder. ``executor``: runs
        the cache filling and the cells elsewhere (:class:`training.cluster.RayExecutor`); None runs them here."""
        if self.dataset is None:
            self.prepare()
        if self.dist.main:
            self._write_header()
        if executor is not None:
            self.load_faces()  # cropped once, into the shared cache, before the tasks read them
            executor.run(self)
        else:
            self.restore_all((self.dist.rank, self.dist.world))
            self.dist.barrier()
            for cell, tests in self.cells():
                self._run_cell(cell, tests)
                self.dist.barrier()
        if self.dist.main:
            self._examples()
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
        if self.dist.main:
            self.faceset = faces.crop_dataset(self.dataset, c.faces, c.cache_dir, self.device, self.progress)
        self.dist.barrier()
        if not self.dist.main:
            self.faceset = faces.crop_dataset(self.dataset, c.faces, c.cache_dir, self.device, False)
        self.keys = face_keys(self.faceset.crops)
        self.cache = RestorationCache(c.cache_dir, c.phases.degrade, self.device, c.cache.batch,
                                      self.progress and self.dist.main)
        if self.dist.main and self.folder.is_dir():
            _write_json(self.folder / "faces.json", faces_summary(self.faceset, self.dataset.framing,
                                                                  c.faces.detector))

    def restore_all(self, shard: tuple[int, int] = (0, 1)) -> dict[str, dict]:
        """Fill the restoration cache for every restored condition the grid needs (this shard's faces)."""
        self.load_faces()
        wanted = sorted({i for cell, tests in self.cells() for i in self._indices(cell, tests)})
        crops = np.asarray(self.faceset.crops[wanted])
        keys = [self.keys[i] for i in wanted]
        counts = {}
        for condition in self.conditions():
            if condition.restorer is not None:
                counts[condition.tag] = self.cache.fill(condition, crops, keys, shard)
        return counts

    def _indices(self, cell: TrainCell, tests: list[Condition]) -> list[int]:
        """Dataset positions the cell needs restored: its test fold when a test restores, plus its training part
        when it trains on restored faces."""
        fold = self.folds[cell.fold]
        need = fold.test if any(t.restorer is not None for t in tests) else ()
        if cell.train.restorer is not None:
            need = need + fold.train + fold.val
        return self.faceset.index(need).tolist()

    def split(self, keys: tuple[str, ...], condition: Condition) -> engine.Split:
        """The faces of ``keys`` as shown under ``condition`` (HR, LR or restored), with their labels."""
        idx = self.faceset.index(keys)
        crops = np.asarray(self.faceset.crops[idx])
        shown = self.cache.load(condition, crops, [self.keys[i] for i in idx])
        return engine.Split(shown, self.faceset.labels[idx])

    def _run_cell(self, cell: TrainCell, tests: list[Condition]) -> None:
        folder = cell.folder(self.folder)
        todo = [t for t in tests if not (folder / f"test-{t.tag}.json").is_file()]
        if not todo:
            return
        fold = self.folds[cell.fold]
        if cell.arm == "zero-shot":
            classifier = classify.load(None, self.device) if self.dist.main else None
        else:
            weights = self._train(cell, folder, fold)
            classifier = classify.load(weights, self.device) if self.dist.main else None
        if not self.dist.main:
            return
        for test in todo:
            split = self.split(fold.test, test)
            probs = classifier.classify(HostCrops(np.ascontiguousarray(split.crops)))
            _write_json(folder / f"test-{test.tag}.json",
                        metrics(cell, test, fold.test, split.labels, probs))

    def _train(self, cell: TrainCell, folder: Path, fold: splits.Fold) -> Path:
        """Train (or resume, or reuse) the cell's model; returns the exported checkpoint."""
        target = folder / "model.safetensors"
        if target.is_file():
            return target
        c = self.config
        folder.mkdir(parents=True, exist_ok=True)
        self.dist.barrier()
        torch.manual_seed(c.train.seed * 1009 + cell.fold)  # the same random head (and body) on every rank
        model = engine.build_model(cell.model, c.train.pretrained)
        result = engine.fit(model, cell.model, self.split(fold.train, cell.train), self.split(fold.val, cell.train),
                            c.train, self.device, folder / "train_state.pt", self.dist,
                            desc=f"{cell.model} {cell.train.tag} fold {cell.fold}", progress=self.progress)
        if self.dist.main:
            model.load_state_dict(result.state)
            _write_json(folder / "fit.json", {"best_epoch": result.best_epoch, "best_val_acc": result.best_val_acc,
                                              "history": result.history})
            # the model file is written last: its presence marks a finished training cell
            save_checkpoint(target, model, cell.model, tuple(Emotion), engine.preprocessing(c.train.input_size),
                            source="fersr-train", dataset=self.dataset.kind, fold=str(cell.fold),
                            train_condition=cell.train.tag, best_epoch=str(result.best_epoch),
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
    return {"model": cell.model, "arm": cell.arm, "fold": cell.fold, "train": cell.train.tag, "test": test.tag,
            "phase": phase_of(cell.arm, test), "width": test.width, "restorer": test.restorer_name,
            "n": int(len(labels)), "accuracy": float((preds == labels).mean()), "per_class": per_class,
            "confusion": confusion.tolist(), "keys": list(keys), "labels": labels.tolist(), "preds": preds.tolist()}


def faces_summary(faceset: faces.FaceSet, framing: str, detector: str) -> dict:
    """faces.json: how the faces were cut and, where a detector ran, the images it found no face in."""
    if faceset.mode != "detect":
        return {"crop": faceset.mode, "detector": None}
    missed = [k for k, found in zip(faceset.keys, faceset.detected) if not found]
    fallback = "KDEF's fixed box" if faces.uses_kdef_box("detect", framing) else "the image's centred square"
    return {"crop": "detect", "detector": detector, "detected": int(faceset.detected.sum()),
            "not_detected": len(missed), "fallback": fallback, "not_detected_keys": missed}


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

