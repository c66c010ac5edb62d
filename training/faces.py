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

How a detected face is framed (``faces.align``) is the stream's (:func:`fersr_stream.align.face_affines`):
``landmarks`` aligns it to the FFHQ 5-point template from the detector's landmarks (eye line level, fixed eye
distance), ``box`` cuts a square around its box with ``faces.margin``; a face without landmarks (a detector that
gives none) gets the box crop. Each face's cut is recorded (:data:`CUTS`), and counted per KDEF view
(:func:`by_view`). Crops that shrink the face are cut at a whole multiple of ``faces.size`` and box-averaged
down (no aliasing). Detections are cached apart from the crops, so each alignment reuses them.
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

from .config import ANGLES, FacesConfig
from .dataset import Dataset

ASPECT = 562 / 762  # width / height of a KDEF image
# The face box (x1, y1, x2, y2) as fractions of that window: square, centred a little above the middle.
FIXED_BOX = (0.25, 0.266, 0.75, 0.634)
# how each face was cut: aligned by its landmarks, a square around the detector's box, or the no-detector crop
CUTS = ("landmarks", "detector_box", "fallback_box")
# images per detector call (of one size; MTCNN's P-Net runs them together): small images gain from it (a third
# less time for the smoke set's 112 x 152 images), large ones do not (KDEF's 562 x 762 go one by one)
DETECT_BATCH, DETECT_PIXELS = 16, 1 << 19
VERSION = 3  # bump when the cropping changes, so cached crops are recomputed


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
        landmarks: (N, 5, 2) float32 landmarks of the face in source pixels, NaN where there are none.
        cut: (N,) each face's cut, one of :data:`CUTS`.
        align: ``faces.align`` the crops were framed with.
    """

    keys: tuple[str, ...]
    labels: np.ndarray
    crops: np.ndarray
    boxes: np.ndarray
    detected: np.ndarray
    mode: str
    landmarks: np.ndarray | None = None
    cut: tuple[str, ...] = ()
    align: str = "landmarks"

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


def _fingerprint(dataset: Dataset, settings: list) -> str:
    h = hashlib.sha256(json.dumps(settings).encode())
    for s in dataset.samples:
        st = s.path.stat()
        h.update(f"{s.key}\0{s.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def crop_dataset(dataset: Dataset, config: FacesConfig, cache_dir: str | Path, device=None,
                 progress: bool = True) -> FaceSet:
    """Crop every sample once; later calls with the same files and settings read the cache.

    Args:
        cache_dir: folder for ``faces/<fingerprint>.npy`` (crops) and ``.json`` (keys, boxes, each face's cut),
            and ``faces/detections-<fingerprint>.json`` (what the detector found, shared by every alignment).
    """
    mode = crop_mode(config, dataset)
    detector = config.detector if mode == "detect" else None
    found_settings = [VERSION, mode, detector, dataset.framing]
    found = _detections(dataset, config, mode, Path(cache_dir) / "faces" /
                        f"detections-{_fingerprint(dataset, found_settings)}.json", device, progress)
    stem = Path(cache_dir) / "faces" / _fingerprint(dataset, found_settings + [config.size, config.margin,
                                                                                config.align])
    meta_path, crops_path = stem.with_suffix(".json"), stem.with_suffix(".npy")
    if not (meta_path.is_file() and crops_path.is_file()):
        _write(dataset, config, mode, found, meta_path, crops_path, progress)
    meta = json.loads(meta_path.read_text())
    return FaceSet(tuple(meta["keys"]), dataset.labels, np.load(crops_path, mmap_mode="r"),
                   np.array(meta["boxes"], np.float32), np.array(meta["detected"], bool), mode,
                   np.array(found["landmarks"], np.float32).reshape(-1, 5, 2), tuple(meta["cut"]), config.align)


def _detections(dataset: Dataset, config: FacesConfig, mode: str, path: Path, device, progress: bool) -> dict:
    """The largest face the detector finds in each image (box, landmarks or NaN), read from ``path`` when there;
    without a detector (``mode`` box or none) nothing is found."""
    if path.is_file():
        return json.loads(path.read_text())
    n = len(dataset)
    boxes, landmarks, detected = np.zeros((n, 4), np.float32), np.full((n, 5, 2), np.nan, np.float32), np.zeros(n, bool)
    if mode == "detect":
        from fersr_stream import detect

        detector = detect.create(DetectConfig(name=config.detector), device)
        for first, images in _batches(dataset, progress):
            for i, found in enumerate(detector.detect(images), first):
                if len(found):
                    j = int(np.argmax(found.widths))
                    boxes[i], detected[i] = found.boxes[j], True
                    if found.landmarks is not None:
                        landmarks[i] = found.landmarks[j]
    blob = {"boxes": boxes.tolist(), "detected": detected.tolist(),
            "landmarks": np.where(np.isnan(landmarks), None, landmarks).tolist()}
    if mode == "detect":  # only a detector's work is worth keeping
        _write_text(path, json.dumps(blob))
    return {**blob, "landmarks": landmarks}


def _batches(dataset: Dataset, progress: bool):
    """(index of the first, images) of up to :data:`DETECT_BATCH` consecutive images of one size and
    :data:`DETECT_PIXELS` pixels in all: a detector takes such a batch in one pass."""
    batch: list[np.ndarray] = []
    first = 0
    for i, sample in enumerate(tqdm(dataset.samples, desc="detect faces", unit="img", disable=not progress)):
        image = dataset.image(sample)
        most = min(DETECT_BATCH, max(DETECT_PIXELS // (image.shape[0] * image.shape[1]), 1))
        if batch and (len(batch) >= most or image.shape != batch[0].shape):
            yield first, batch
            batch, first = [], i
        batch.append(image)
    if batch:
        yield first, batch


def face_cut(image: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None, config: FacesConfig,
             margin: float) -> tuple[np.ndarray, str]:
    """One face's ``faces.size`` crop, framed as ``faces.align`` says, and which cut it got (:data:`CUTS`, with
    "detector_box" for any box: the caller knows when it is a fallback).

    Args:
        image: (H, W, 3) uint8 RGB.
        box: (4,) face box in source pixels.
        landmarks: (5, 2) its landmarks, or None.
        margin: border around the box, per side, as a fraction of its longer edge.
    """
    usable = landmarks is not None and np.isfinite(landmarks).all()
    faces = Faces(box[None].astype(np.float32), np.ones(1, np.float32),
                  landmarks=landmarks[None].astype(np.float32) if usable else None)
    affines = align.face_affines(faces, config.size, margin, config.align)
    aligned = config.align == "landmarks" and bool(align.landmark_affines(faces, config.size)[1][0])
    return align.crop(image, affines, config.size, antialias=True)[0], "landmarks" if aligned else "detector_box"


def _write(dataset: Dataset, config: FacesConfig, mode: str, found: dict, meta_path: Path, crops_path: Path,
           progress: bool) -> None:
    """Cut every face into ``crops_path`` and write ``meta_path`` last (atomically: its presence marks a complete
    entry, so concurrent processes never read a partial one)."""
    crops_path.parent.mkdir(parents=True, exist_ok=True)
    n, size = len(dataset), config.size
    tmp = crops_path.with_name(f".{crops_path.name}.{os.getpid()}.tmp")
    crops = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    boxes, detected = np.array(found["boxes"], np.float32), np.array(found["detected"], bool)
    landmarks = np.asarray(found["landmarks"], np.float32)
    cut = []
    kdef_box = uses_kdef_box(mode, dataset.framing)
    for i, sample in enumerate(tqdm(dataset.samples, desc="crop faces", unit="img", disable=not progress)):
        image = dataset.image(sample)
        if detected[i]:
            crops[i], how = face_cut(image, boxes[i], landmarks[i], config, config.margin)
        else:
            if kdef_box:
                boxes[i], margin = fixed_box(*image.shape[:2]), config.margin
            else:
                boxes[i], margin = square_box(*image.shape[:2]), 0.0  # the image is the face: no border around it
            crops[i], how = face_cut(image, boxes[i], None, config, margin)[0], "fallback_box"
        cut.append(how)
    crops.flush()
    del crops
    os.replace(tmp, crops_path)
    meta = {"keys": [s.key for s in dataset.samples], "boxes": boxes.tolist(), "detected": detected.tolist(),
            "cut": cut, "mode": mode, "config": vars(config)}
    _write_text(meta_path, json.dumps(meta))


def _write_text(path: Path, text: str) -> None:
    """Write atomically (temp file + rename), so a concurrent reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def by_view(faceset: FaceSet, dataset: Dataset) -> list[dict]:
    """Per KDEF view (FL, HL, S, HR, FR; "all" for a dataset without views): images, faces detected, and how many
    got each cut (:data:`CUTS`), with a last row for all views together."""
    views = [s.angle or "all" for s in dataset.samples]
    order = [v for v in ANGLES if v in views] + sorted({v for v in views if v not in ANGLES})
    groups = [(v, [i for i, w in enumerate(views) if w == v]) for v in order]
    if len(groups) > 1:
        groups.append(("all", list(range(len(views)))))
    rows = []
    for view, members in groups:
        cuts = [faceset.cut[i] for i in members]
        rows.append({"view": view, "images": len(members), "detected": int(faceset.detected[members].sum()),
                     **{c: cuts.count(c) for c in CUTS}})
    return rows
