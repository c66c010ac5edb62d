"""OpenCV's Haar frontal-face cascade: the offline default (it ships inside opencv-python, no download).

The cascade runs on the plain grayscale frame. The usual ``equalizeHist`` is left out on purpose: the cascade
already normalises every window by its own contrast, and a global equalisation of a frame dominated by smooth
background squeezes the face's tones. Measured with the bundled cascade: on the synthetic clip (one astronaut face,
38-70 px) recall went from 20/30 frames with equalisation to 30/30 without; on 100 LFW faces pasted on textures,
93 -> 97 found; false positives on 14 non-face scikit-image pictures, 16 -> 8.

Haar gives no confidence, only the sum of the last cascade stage's weak classifiers ("level weight") for each
grouped box (``detectMultiScale3(..., outputRejectLevels=True)``). We squash it to a score with
``sigmoid(weight - 2)``. On 300 LFW faces (36-100 px) pasted on textures, true faces have weights >= 3.1 in 95 %
of cases (median 6.9); the false positives on coins and gravel weigh 1.2-3.9. The default ``score_threshold`` 0.6
(weight >= 2.4) keeps 97.6 % of those faces and drops half of those false positives, so the threshold is applied
as for the other detectors.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..config import DetectConfig
from ..errors import WeightsError
from ..types import Faces
from .base import Detector, check_image, distinct, downscale, join, shrink, to_faces

CASCADE = "haarcascade_frontalface_default.xml"
_WINDOW = 24  # the cascade's training window: nothing smaller can be found
_WEIGHT_OFFSET = 2.0  # level weight that maps to score 0.5 (see module docstring)
MIN_NEIGHBORS = 3  # OpenCV's default: overlapping hits needed to keep a box
# Searching near a known face (refine): the region reaches this many face widths beyond each side of the known
# box, is shrunk so that the face is about _NEAR_WIDTH px wide (twice the cascade window), and only faces of
# 0.8-1.25x the known size are tried, on a finer pyramid (more scales per face, so enough neighbours). 0.8 rather
# than 0.7: the smallest sizes cost most (most windows) and a face seldom shrinks 20 % in a frame.
NEAR_MARGIN = 0.5
_NEAR_WIDTH = 48
_NEAR_SIZES = (0.8, 1.25)
_NEAR_STEP = 1.1


def weight_to_score(weights: np.ndarray) -> np.ndarray:
    """(N,) Haar level weights -> (N,) float32 scores in [0, 1] (a logistic squash centred on 2)."""
    return (1.0 / (1.0 + np.exp(-(np.asarray(weights, np.float64) - _WEIGHT_OFFSET)))).astype(np.float32)


class HaarDetector(Detector):
    """Haar cascade on the grayscale frame, shrunk to ``config.detect_width``.

    Faces narrower than ``config.min_face`` source pixels are not searched for (nor are faces narrower than the
    24-pixel cascade window in the shrunk frame); landmarks are None. Not thread-safe: call from one thread.
    """

    takes_weights = False  # the cascade ships inside opencv-python
    follows = True

    def __init__(self, config: DetectConfig, device=None):
        del device  # OpenCV runs on the CPU
        self.config = config
        if not hasattr(cv2, "CascadeClassifier"):  # OpenCV 5 dropped the cascades (another package may pull it in)
            raise WeightsError(f"the Haar detector needs OpenCV 4 (this is OpenCV {cv2.__version__}, which has no "
                               f"Haar cascades): pip install 'opencv-python>=4.9,<5', or use --detector yunet "
                               f"or retinaface")
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if self.cascade.empty():
            raise WeightsError(f"OpenCV's {CASCADE} could not be loaded from {cv2.data.haarcascades}")

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        """One Faces per RGB uint8 frame; boxes in source pixels, scores from the level weights."""
        return [self._detect_one(image) for image in images]

    def refine(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[Faces]:
        """Per frame, the best face of about the size of each of its ``boxes`` in a region around it (a fraction of
        a whole-frame search: ``python -m fersr_stream.bench.choices``), overlapping ones merged."""
        out = []
        for image, known in zip(images, boxes):
            check_image(image)
            found = [self._near(image, box) for box in np.asarray(known, np.float32).reshape(-1, 4)]
            best = [f.select(np.argmax(f.scores, keepdims=True)) for f in found if len(f)]  # one face a region
            out.append(distinct(join(best)))
        return out

    def _near(self, image: np.ndarray, box: np.ndarray) -> Faces:
        """Faces of about the size of ``box`` (x1, y1, x2, y2 source pixels) in a region around it, in source
        pixels, thresholded as in :meth:`detect`."""
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        side = max(x2 - x1, y2 - y1, 1.0)
        reach = side * NEAR_MARGIN
        left, top = max(0, int(x1 - reach)), max(0, int(y1 - reach))
        right, bottom = min(w, int(np.ceil(x2 + reach))), min(h, int(np.ceil(y2 + reach)))
        scale = min(1.0, _NEAR_WIDTH / side)
        if right - left < 2 or bottom - top < 2:
            return Faces.empty()
        region = cv2.cvtColor(image[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            region = shrink(region, (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale))))
        low = max(_WINDOW, int(side * scale * _NEAR_SIZES[0]), int(np.ceil(self.config.min_face * scale)))
        high = int(side * scale * _NEAR_SIZES[1])
        if low > min(region.shape) or high < low:
            return Faces.empty()
        return self._cascade(region, low, high, _NEAR_STEP, scale, (left, top), image.shape)

    def _detect_one(self, image: np.ndarray) -> Faces:
        check_image(image)
        # gray first: shrinking one channel costs a third of three
        gray, scale = downscale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), self.config.detect_width, fast=True)
        side = max(_WINDOW, int(np.ceil(self.config.min_face * scale)))
        if side > min(gray.shape):
            return Faces.empty()
        return self._cascade(gray, side, 0, self.config.scale_factor, scale, (0, 0), image.shape)

    def _cascade(self, gray: np.ndarray, low: int, high: int, step: float, scale: float,
                 offset: tuple[int, int], frame_shape: tuple[int, ...]) -> Faces:
        """Run the cascade on ``gray`` (source pixels times ``scale``, starting at ``offset``) for faces
        ``low``..``high`` px wide (0 = no upper bound); thresholded Faces in source pixels."""
        rects, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=step, minNeighbors=MIN_NEIGHBORS, minSize=(low, low), maxSize=(high, high),
            outputRejectLevels=True)
        if len(rects) == 0:
            return Faces.empty()
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        boxes += np.array(offset * 2, np.float32) * scale  # into the shrunk frame's pixels, for to_faces
        scores = weight_to_score(np.ravel(weights))
        keep = scores >= self.score_threshold
        return to_faces(boxes[keep], scores[keep], None, scale, frame_shape, self.config.min_face)
