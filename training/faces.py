"""Face crops of a dataset, cut with the stream's own detector and crop code and cached on disk.

With ``faces.detect`` the stream's detector finds the face (the largest one when several) and
:func:`fersr_stream.align.crop` cuts it; an image where nothing is found falls back to the fixed box and is
counted. Without it every image gets the fixed box, placed in a centred window of the usual aspect (KDEF's
562 x 762), which suits KDEF's fixed framing and keeps the two oversized images comparable.
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
from fersr_stream.types import Faces

from .config import FacesConfig
from .dataset import Dataset, read_rgb

ASPECT = 562 / 762  # width / height of a KDEF image
# The face box (x1, y1, x2, y2) as fractions of that window: square, centred a little above the middle.
FIXED_BOX = (0.25, 0.266, 0.75, 0.634)
VERSION = 1  # bump when the cropping changes, so cached crops are recomputed


@dataclass(frozen=True)
class FaceSet:
    """The crops of a dataset, in sample order.

    Attributes:
        keys: (N,) sample keys.
        labels: (N,) int64 emotion indices.
        crops: (N, S, S, 3) uint8 RGB (a read-only memory map when loaded from the cache).
        boxes: (N, 4) float32 face boxes in source pixels.
        detected: (N,) bool, False where the fixed box was used.
    """

    keys: tuple[str, ...]
    labels: np.ndarray
    crops: np.ndarray
    boxes: np.ndarray
    detected: np.ndarray

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


def _fingerprint(dataset: Dataset, config: FacesConfig) -> str:
    h = hashlib.sha256(json.dumps([VERSION, config.detect, config.detector, config.size, config.margin]).encode())
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
    folder = Path(cache_dir) / "faces"
    stem = folder / _fingerprint(dataset, config)
    meta_path, crops_path = stem.with_suffix(".json"), stem.with_suffix(".npy")
    labels = dataset.labels
    if meta_path.is_file() and crops_path.is_file():
        meta = json.loads(meta_path.read_text())
        return FaceSet(tuple(meta["keys"]), labels, np.load(crops_path, mmap_mode="r"),
                       np.array(meta["boxes"], np.float32), np.array(meta["detected"], bool))
    folder.mkdir(parents=True, exist_ok=True)
    detector = None
    if config.detect:
        from fersr_stream import detect

        detector = detect.create(DetectConfig(name=config.detector), device)
    n, size = len(dataset), config.size
    tmp = crops_path.with_name(f".{crops_path.name}.{os.getpid()}.tmp")
    crops = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    boxes = np.zeros((n, 4), np.float32)
    detected = np.zeros(n, bool)
    for i, sample in enumerate(tqdm(dataset.samples, desc="crop faces", unit="img", disable=not progress)):
        image = read_rgb(sample.path)
        box = None
        if detector is not None:
            found = detector.detect([image])[0]
            if len(found):
                box = found.boxes[int(np.argmax(found.widths))]
                detected[i] = True
        if box is None:
            box = fixed_box(*image.shape[:2])
        faces = Faces(box[None].astype(np.float32), np.ones(1, np.float32))
        crops[i] = align.crop(image, align.face_affines(faces, size, config.margin), size)[0]
        boxes[i] = box
    crops.flush()
    del crops
    os.replace(tmp, crops_path)
    meta = {"keys": [s.key for s in dataset.samples], "boxes": boxes.tolist(), "detected": detected.tolist(),
            "config": vars(config)}
    tmp_meta = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, meta_path)  # written last: its presence marks a complete entry
    return FaceSet(tuple(meta["keys"]), labels, np.load(crops_path, mmap_mode="r"), boxes, detected)
