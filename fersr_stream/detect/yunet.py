"""YuNet (OpenCV Zoo, MIT) through ``cv2.FaceDetectorYN``: boxes, scores and 5 landmarks from a 230 kB ONNX file.

The network reads BGR 0..255 pixels (OpenCV pads the frame to a multiple of 32 itself). Its landmarks come as
right eye, left eye, nose tip, right and left mouth corners -- the subject's right, so the first point is the eye
on the image's left -- which is the order of :class:`Faces` landmarks and of the FFHQ template in ``align.py``.
OpenCV's DNN module runs it on the CPU whatever the stream's device.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..config import DetectConfig
from ..errors import WeightsError
from ..types import Faces
from .base import Detector, check_image, downscale, to_faces

DEFAULT_WEIGHTS = "yunet.2023mar"
NMS_THRESHOLD = 0.3  # OpenCV Zoo's demo value
TOP_K = 5000


def resolve_weights(weights: str | Path | None) -> Path:
    """A local ONNX path for ``weights``: a registry name's cached file, or an existing file path as is.

    Raises:
        WeightsError: a path that does not exist, a registry entry that is not cached yet (nothing is downloaded
            here: see :func:`fersr_stream.detect.fetch`), or one of another architecture.
    """
    from ..weights import store  # imported late so haar users never need it

    return store.ensure(str(weights or DEFAULT_WEIGHTS), arch="yunet")


def _cv_reason(exc: cv2.error) -> str:
    """The useful part of an OpenCV error (its text spans several lines and names C++ files)."""
    text = " ".join(str(exc).split())
    return text.split("error: ", 1)[-1][:200]


class YuNetDetector(Detector):
    """YuNet on the frame shrunk to ``config.detect_width``; faces below ``config.min_face`` source px are dropped.

    Not thread-safe (the OpenCV object keeps its input size): call from one thread.
    """

    default_weights = DEFAULT_WEIGHTS

    def __init__(self, config: DetectConfig, device=None):
        del device  # OpenCV's DNN runs on the CPU here
        self.config = config
        path = resolve_weights(config.weights)
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (32, 32), self.score_threshold, NMS_THRESHOLD,
                                                 TOP_K)
        except cv2.error as exc:
            # a file of the user's own is theirs to fix; the registry's can be fetched again
            fix = "" if config.weights and config.weights != DEFAULT_WEIGHTS and Path(config.weights).exists() \
                else f"; get a good copy with `fersr-models download {DEFAULT_WEIGHTS} --force`"
            raise WeightsError(f"cannot load YuNet model {path}: {_cv_reason(exc)}{fix}") from None
        self._size = (32, 32)
        # Some ONNX files load but are not YuNet: run once now so that shows as a weights error, not mid-stream.
        try:
            self.net.detect(np.zeros((32, 32, 3), np.uint8))
        except cv2.error as exc:
            raise WeightsError(f"{path} is not a YuNet face detector: {_cv_reason(exc)}") from None

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        """One Faces per RGB uint8 frame: boxes and landmarks in source pixels, scores in [0, 1]."""
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: np.ndarray) -> Faces:
        check_image(image)
        small, scale = downscale(image, self.config.detect_width)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self.net.setInputSize(size)
            self._size = size
        _, found = self.net.detect(bgr)
        if found is None or len(found) == 0:
            return Faces.empty()
        found = np.asarray(found, np.float32).reshape(-1, 15)
        boxes = np.concatenate([found[:, :2], found[:, :2] + found[:, 2:4]], axis=1)
        return to_faces(boxes, found[:, 14], found[:, 4:14].reshape(-1, 5, 2), scale, image.shape,
                        self.config.min_face)
