"""Crop: cut each face aligned (FFHQ 5-point template, or a square box crop without landmarks, or always a box crop
when the classifier was trained on those), and make it low-resolution on purpose where asked (``--simulate-lr``)."""

from __future__ import annotations

from ... import align, crops
from ...config import AlignConfig, DegradeConfig, StreamConfig
from ...crops import Noise
from ...types import Frame
from ...weights.registry import Preprocessing
from .base import PerSource, Stage

CLASSIFIER_OVERSAMPLING = 4  # crop side / classifier input side, where only the classifier reads the crops


def crop_side(config: StreamConfig, preprocessing) -> int:
    """Side of the aligned face crops: ``align.size`` where a restorer, the low-resolution simulation or the
    paste-back reads them. Where only the classifier (and the inset) does, the side whose centre crop (the
    classifier's ``preprocessing.crop``) is :data:`CLASSIFIER_OVERSAMPLING` times the classifier's input side
    (``preprocessing.size``), when that is smaller: the shrink to the input is then a 4x4 box average, and the cut
    costs a fraction of a full-size one, while the classifier's input stays within a few levels of what the full
    crop gives (``tests/unit/pipeline/test_crop_stage.py``)."""
    full = config.align.size
    p = preprocessing
    if config.enhance.name != "none" or config.degrade.width is not None or config.overlay.paste or p.size is None:
        return full
    return min(full, round(CLASSIFIER_OVERSAMPLING * p.size / p.crop))


def framing(align_config: AlignConfig, preprocessing: Preprocessing | None) -> tuple[str, float]:
    """(align, margin) of the face crops: what the classifier's weights were trained on where they record it
    (``Preprocessing.align`` and ``margin``, written by ``fersr-train``), else landmarks and ``align.margin``.
    The classifier reads what it was trained on; a restorer then restores the same crops, as in the study."""
    p = preprocessing or Preprocessing()
    return p.align or "landmarks", align_config.margin if p.margin is None else p.margin


class CropStage(Stage):
    """Cuts ``size`` px crops (host or device, as the frame is: :func:`fersr_stream.crops.cut`) framed as
    :func:`framing` says, and degrades them when ``degrade.width`` is set, with one noise source per source (a run
    repeats exactly, whatever else it reads)."""

    name = "crop"

    def __init__(self, size: int, align_config: AlignConfig, degrade_config: DegradeConfig,
                 preprocessing: Preprocessing | None = None):
        self.size, self.degrade = size, degrade_config
        self.align, self.margin = framing(align_config, preprocessing)
        self.noise = PerSource(lambda source: Noise(degrade_config.seed))

    def process(self, frames: list[Frame]) -> list[Frame]:
        return [self._crop(frame) for frame in frames]

    def _crop(self, frame: Frame) -> Frame:
        faces = frame.faces
        affines = align.face_affines(faces, self.size, self.margin, self.align)
        cut = crops.cut(frame, affines, self.size)
        if self.degrade.width is not None and len(faces):
            # the classifier sees the low-resolution face enlarged; a restorer starts from the small image itself
            cut = cut.degrade(self.degrade, self.noise[frame.source])
        return frame.replace(faces=faces.replace(affines=affines, crops=cut))
