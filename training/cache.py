"""Low-resolution and restored faces of the study, restored once and kept on disk.

Every restored face is a PNG keyed by the face itself (sha256 of the HR crop) inside a folder keyed by the
condition: crop size, the degradation that makes the LR image (width, blur, noise, JPEG, seed), the restorer, its
parameters and the sha256 of its weights. Writes are atomic (temporary file + rename), so concurrent or killed
workers never leave half an image, and the work splits by face key into shards (``--shard i/n``) that separate
machines fill into copies of the same tree; merging is copying folders. A warm cache makes zero restorer calls.

Low-resolution faces are recomputed (a resize costs far less than a PNG read); their noise, if any, comes from
a generator seeded per face, so the LR face of an image is the same in every phase and on every machine.

What each condition shows the classifier, all at the crop size S:

- LR (phase 2): the LR image enlarged back with ``degrade.interpolation`` (the stream's ``degrade``). The study's
  default is bilinear, what torchvision's ``Resize`` -- the input transform of the transfer-learning code the
  published study built on -- does to a small image, i.e. the face as a classifier gets it with no restoration.
- LR + restorer (phase 3): every restorer receives the LR image itself (``width`` px square) and brings it up its
  own way: ``bicubic`` is the stream's bicubic enhancer (the classical super-resolution baseline), the networks
  enlarge it to their 512 px input and restore it. Their 512 px output is area-averaged back to S.

So ``bicubic`` differs from plain LR by the interpolation kernel only (bicubic's sharper, overshooting kernel vs.
bilinear); with ``degrade.interpolation: bicubic`` the two would be nearly the same images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fersr_stream import degrade as fdegrade
from fersr_stream.config import DegradeConfig, EnhanceConfig
from fersr_stream.crops import HostCrops
from fersr_stream.errors import FersrError

from .config import RestorerSpec, weights_id

VERSION = 2  # bump when restoration changes meaning, so old entries are not reused
# (2: restorers take the LR image at its own size instead of the enlarged LR crop)
# Conditions are keyed by the weights' sha256 alone (not the name they were given by), so ``gfpgan`` and
# ``gfpgan:gfpgan.v1_4`` share one cache folder.


class CacheError(FersrError):
    """A restoration cache that lacks faces a run needs (e.g. only some shards were filled)."""


@dataclass(frozen=True)
class Condition:
    """What the classifier is shown: HR (``width`` None), LR at ``width`` px, or LR restored by ``restorer``."""

    width: int | None = None
    restorer: RestorerSpec | None = None

    @property
    def tag(self) -> str:
        """``hr``, ``lr16`` or ``lr16-codeformer@0.5``: a file-name-safe label."""
        if self.width is None:
            return "hr"
        return f"lr{self.width}" + (f"-{self.restorer.tag}" if self.restorer else "")

    @property
    def restorer_name(self) -> str:
        """``hr``, ``none`` (plain LR) or the restorer tag, as tables show it."""
        if self.width is None:
            return "hr"
        return self.restorer.tag if self.restorer else "none"


def face_keys(crops: np.ndarray) -> list[str]:
    """sha256 of each (S, S, 3) crop's bytes: the key under which its restorations are stored."""
    return [hashlib.sha256(np.ascontiguousarray(c).tobytes()).hexdigest() for c in crops]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise CacheError(f"--shard expects i/n such as 0/4, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise CacheError(f"--shard {text}: need 0 <= i < n")
    return i, n


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    return int(key[:12], 16) % shard[1] == shard[0]


def weights_sha256(spec: RestorerSpec) -> str:
    """The sha256 identifying a restorer's weights (``none`` for bicubic): registry value, or the file's hash."""
    if spec.name == "bicubic":
        return "none"
    return weights_id(spec.weights or default_weights(spec.name))


def default_weights(restorer: str) -> str:
    """The registry entry an enhancer loads when given no weights."""
    from fersr_stream.enhance import ENHANCERS

    return ENHANCERS.get(restorer).default_weights


class RestorationCache:
    """LR faces on demand and restored faces through the on-disk cache.

    Args:
        root: cache folder (``<root>/restored/<condition>/<ab>/<face key>.png``).
        degrade: blur/noise/JPEG/interpolation/seed of the degradation; the width comes per call.
        device: where restorers run.
        batch: faces per restorer call.
    """

    def __init__(self, root: str | Path, degrade: DegradeConfig, device=None, batch: int = 4,
                 progress: bool = True):
        self.root = Path(root) / "restored"
        self.degrade_config = degrade
        self.device = device
        self.batch = max(int(batch), 1)
        self.progress = progress
        self.calls = 0  # restorer invocations made by this object
        self.restored = 0  # faces restored by this object
        self._enhancers: dict[str, object] = {}
        self._sha: dict[str, str] = {}

    # -------------------------------------------------------------------------------------------- LR
    def _rng(self, key: str) -> np.random.Generator:
        """The noise source of one face: the same for a face in every call, phase and process."""
        return np.random.default_rng([self.degrade_config.seed, int(key[:15], 16)])

    def lr(self, crops: np.ndarray, keys: list[str], width: int) -> np.ndarray:
        """(N, S, S, 3) uint8: ``crops`` degraded to ``width`` px and enlarged back (the stream's degrade)."""
        config = dataclasses.replace(self.degrade_config, width=width)
        out = np.empty(crops.shape, np.uint8)
        for i, (crop, key) in enumerate(zip(crops, keys)):
            out[i] = fdegrade.degrade(np.ascontiguousarray(crop)[None], config, self._rng(key))[0]
        return out

    def small(self, crops: np.ndarray, keys: list[str], width: int) -> np.ndarray:
        """(N, w, w, 3) uint8 with w = ``width``: the LR images themselves, before any enlargement.

        The same pixels :meth:`lr` enlarges (same blur, noise and JPEG draw per face); restorers start from these.
        """
        out = np.empty((len(crops), width, width, 3), np.uint8)
        for i, (crop, key) in enumerate(zip(crops, keys)):
            out[i] = fdegrade.downsample(np.ascontiguousarray(crop)[None], width, self.degrade_config,
                                         self._rng(key))[0]
        return out

    # ----------------------------------------------------------------------------------- conditions
    def condition_key(self, condition: Condition, size: int) -> tuple[str, dict]:
        """(hash, description) of everything that makes a restored face what it is."""
        spec = condition.restorer
        if spec.tag not in self._sha:
            self._sha[spec.tag] = weights_sha256(spec)
        degrade = dataclasses.asdict(dataclasses.replace(self.degrade_config, width=condition.width))
        degrade.pop("interpolation")  # restorers start from the LR image itself, never from its enlargement
        blob = {"version": VERSION, "size": size, "degrade": degrade,
                "restorer": spec.name, "fidelity": spec.fidelity if spec.name == "codeformer" else None,
                "weights_sha256": self._sha[spec.tag]}  # by content, not name: one file is restored once
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:20], blob

    def _folder(self, condition: Condition, size: int) -> Path:
        key, blob = self.condition_key(condition, size)
        folder = self.root / f"{condition.tag}-{key}"
        if not (folder / "condition.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(folder / "condition.json", json.dumps(blob, indent=1).encode())
        return folder

    @staticmethod
    def _path(folder: Path, key: str) -> Path:
        return folder / key[:2] / f"{key}.png"

    # ------------------------------------------------------------------------------------- restoring
    def missing(self, condition: Condition, crops: np.ndarray, keys: list[str]) -> list[int]:
        folder = self._folder(condition, crops.shape[1])
        return [i for i, k in enumerate(keys) if not self._path(folder, k).is_file()]

    def fill(self, condition: Condition, crops: np.ndarray, keys: list[str],
             shard: tuple[int, int] = (0, 1)) -> dict:
        """Restore the faces of ``shard`` that the cache lacks.

        Returns:
            {"restored": faces restored now, "cached": faces already there, "other_shards": faces left to others}.
        """
        folder = self._folder(condition, crops.shape[1])
        todo, cached, others = [], 0, 0
        for i, key in enumerate(keys):
            if not in_shard(key, shard):
                others += 1
            elif self._path(folder, key).is_file():
                cached += 1
            else:
                todo.append(i)
        bar = tqdm(total=len(todo), desc=f"restore {condition.tag}", unit="face", leave=False,
                   disable=not self.progress or not todo)
        for start in range(0, len(todo), self.batch):
            idx = todo[start:start + self.batch]
            batch_keys = [keys[i] for i in idx]
            low = self.small(crops[idx], batch_keys, condition.width)
            for key, face in zip(batch_keys, self._restore(condition.restorer, low, crops.shape[1])):
                path = self._path(folder, key)
                path.parent.mkdir(parents=True, exist_ok=True)
                ok, data = cv2.imencode(".png", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
                if not ok:
                    raise RuntimeError(f"OpenCV could not PNG-encode a {face.shape} face")
                _atomic_write(path, data.tobytes())
            bar.update(len(idx))
        bar.close()
        return {"restored": len(todo), "cached": cached, "other_shards": others}

    def _restore(self, spec: RestorerSpec, low: np.ndarray, size: int) -> np.ndarray:
        """Run the stream's enhancer on (N, w, w, 3) LR images; it answers at 512 px, shrunk to ``size`` here."""
        if spec.tag not in self._enhancers:
            from fersr_stream import enhance

            config = EnhanceConfig(name=spec.name, weights=spec.weights, fidelity=spec.fidelity, batch=self.batch)
            self._enhancers[spec.tag] = enhance.create(config, self.device)
        out = self._enhancers[spec.tag].enhance(HostCrops(np.ascontiguousarray(low)))
        self.calls += 1
        self.restored += len(low)
        return out.resize(size, "area").host()

    def load(self, condition: Condition, crops: np.ndarray, keys: list[str]) -> np.ndarray:
        """(N, S, S, 3) uint8 faces as the classifier sees them under ``condition`` (HR, LR or restored)."""
        if condition.width is None:
            return np.asarray(crops)
        if condition.restorer is None:
            return self.lr(crops, keys, condition.width)
        folder = self._folder(condition, crops.shape[1])
        out = np.empty(crops.shape, np.uint8)
        for i, key in enumerate(keys):
            image = cv2.imread(str(self._path(folder, key)), cv2.IMREAD_COLOR)
            if image is None:
                lacking = len(self.missing(condition, crops, keys))
                raise CacheError(f"restoration cache {folder} lacks {lacking} of {len(keys)} faces for "
                                 f"{condition.tag}; fill every shard (`fersr-train restore --shard i/n`) "
                                 "or run without --shard")
            out[i] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return out


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
