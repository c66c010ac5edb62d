"""Face crops of a dataset, cut with the stream's own detector and crop code and cached on disk.

How a dataset's faces are cut (``faces.crop``) depends on how they sit in its images (``Dataset.framing``):

- ``detect``: the stream's detector finds the face (the largest one when several) and
  :func:`fersr_stream.align.crop` cuts it with ``faces.margin``; an image where nothing is found gets the
  no-detector crop below, and is counted and listed.
- ``box``: KDEF's fixed face box, placed in a centred window of KDEF's 562 x 762 aspect (which keeps its two
  oversized images comparable). It fits KDEF's fixed framing only, so other datasets refuse it.
- ``none``: the image is the face: its centred square, resized to ``faces.size`` without a margin (already
  cropped sets such as FER2013's 48 x 48 faces, which KDEF's box would cut through the mouth).
- ``auto`` (default): ``none`` for already-cropped faces, ``detect`` for KDEF and for portraits and full frames.

The no-detector crop is the fixed box for KDEF-framed images and the centred square for every other dataset.
Either way phase 2/3 degradations then act on crops of a known pixel width.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fersr_stream import align
from fersr_stream.config import DetectConfig
from fersr_stream.errors import ConfigError
from fersr_stream.types import Faces

from .config import FacesConfig
from .dataset import Dataset

ASPECT = 562 / 762  # width / height of a KDEF image
# The face box (x1, y1, x2, y2) as fractions of that window: square, centred a little above the middle.
FIXED_BOX = (0.25, 0.266, 0.75, 0.634)
VERSION = 2  # bump when the cropping changes, so cached crops are recomputed


@dataclass(frozen=True)
class FaceSet:
    """The crops of a dataset, in sample order.

    Attributes:
        keys: (N,) sample keys.
        labels: (N,) int64 emotion indices.
        crops: (N, S, S, 3) uint8 RGB (a read-only memory map when loaded from the cache).
        boxes: (N, 4) float32 face boxes in source pixels.
        detected: (N,) bool, False where no detector ran or it found nothing.
        mode: how the faces were cut: detect | box | none (see the module's docstring).
    """

    keys: tuple[str, ...]
    labels: np.ndarray
    crops: np.ndarray
    boxes: np.ndarray
    detected: np.ndarray
    mode: str

    def index(self, keys) -> np.ndarray:
        """(M,) int positions of ``keys``."""
        where = {k: i for i, k in enumerate(self.keys)}
        return np.array([where[k] for k in keys], np.int64)


def fixed_box(height: int, width: int) -> np.ndarray:
    """(4,) float32 face box for an image of this size (see :data:`FIXED_BOX`)."""
    if width / height > ASPECT:
        win_w, win_h = height * ASPECT, float(height)
    else:
        win_w, win_h = float(width), width / ASPECT
    x0, y0 = (width - win_w) / 2, (height - win_h) / 2
    fx1, fy1, fx2, fy2 = FIXED_BOX
    return np.array([x0 + fx1 * win_w, y0 + fy1 * win_h, x0 + fx2 * win_w, y0 + fy2 * win_h], np.float32)


def square_box(height: int, width: int) -> np.ndarray:
    """(4,) float32 box of the image's centred square (the whole of a square image)."""
    side = min(height, width)
    x0, y0 = (width - side) / 2, (height - side) / 2
    return np.array([x0, y0, x0 + side, y0 + side], np.float32)


def crop_mode(config: FacesConfig, dataset: Dataset) -> str:
    """How ``dataset``'s faces are cut: detect | box | none (``faces.crop``, with ``auto`` resolved).

    Raises:
        ConfigError: ``box`` for a dataset that is not framed as KDEF is.
    """
    if config.crop == "auto":
        return "none" if dataset.framing == "face" else "detect"
    if config.crop == "box" and dataset.framing != "kdef":
        raise ConfigError(f"faces.crop=box is KDEF's fixed face box, which does not fit {dataset.kind} images; "
                          "use faces.crop=auto, detect or none")
    return config.crop


def uses_kdef_box(mode: str, framing: str) -> bool:
    """Whether images without a detected face get KDEF's fixed box (else their centred square)."""
    return mode == "box" or (mode == "detect" and framing == "kdef")


def _fingerprint(dataset: Dataset, config: FacesConfig, mode: str) -> str:
    detector = config.detector if mode == "detect" else None
    settings = [VERSION, mode, detector, dataset.framing, config.size, config.margin]
    h = hashlib.sha256(json.dumps(settings).encode())
    for s in dataset.samples:
        st = s.path.stat()
        h.update(f"{s.key}\0{s.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def crop_dataset(dataset: Dataset, config: FacesConfig, cache_dir: str | Path, device=None,
                 progress: bool = True) -> FaceSet:
    """Crop every sample once; later calls with the same files and settings read the cache.

    Args:
        cache_dir: folder for ``faces/<fingerprint>.npy`` (crops) and ``.json`` (keys, boxes, detected).
    """
    mode = crop_mode(config, dataset)
    stem = Path(cache_dir) / "faces" / _fingerprint(dataset, config, mode)
    meta_path, crops_path = stem.with_suffix(".json"), stem.with_suffix(".npy")
    if not (meta_path.is_file() and crops_path.is_file()):
        _write(dataset, config, mode, meta_path, crops_path, device, progress)
    meta = json.loads(meta_path.read_text())
    return FaceSet(tuple(meta["keys"]), dataset.labels, np.load(crops_path, mmap_mode="r"),
                   np.array(meta["boxes"], np.float32), np.array(meta["detected"], bool), mode)


def _write(dataset: Dataset, config: FacesConfig, mode: str, meta_path: Path, crops_path: Path, device,
           progress: bool) -> None:
    """Cut every face into ``crops_path`` and write ``meta_path`` last (atomically: its presence marks a complete
    entry, so concurrent processes never read a partial one)."""
    crops_path.parent.mkdir(parents=True, exist_ok=True)
    detector = None
    if mode == "detect":
        from fersr_stream import detect

        detector = detect.create(DetectConfig(name=config.detector), device)
    n, size = len(dataset), config.size
    tmp = crops_path.with_name(f".{crops_path.name}.{os.getpid()}.tmp")
    crops = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    boxes = np.zeros((n, 4), np.float32)
    detected = np.zeros(n, bool)
    kdef_box = uses_kdef_box(mode, dataset.framing)
    for i, sample in enumerate(tqdm(dataset.samples, desc="crop faces", unit="img", disable=not progress)):
        image = dataset.image(sample)
        found = detector.detect([image])[0] if detector is not None else ()
        if len(found):
            boxes[i], margin, detected[i] = found.boxes[int(np.argmax(found.widths))], config.margin, True
        elif kdef_box:
            boxes[i], margin = fixed_box(*image.shape[:2]), config.margin
        else:
            boxes[i], margin = square_box(*image.shape[:2]), 0.0  # the image is the face: no border around it
        faces = Faces(boxes[i][None], np.ones(1, np.float32))
        crops[i] = align.crop(image, align.face_affines(faces, size, margin), size)[0]
    crops.flush()
    del crops
    os.replace(tmp, crops_path)
    meta = {"keys": [s.key for s in dataset.samples], "boxes": boxes.tolist(), "detected": detected.tolist(),
            "mode": mode, "config": vars(config)}
    tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, meta_path)
