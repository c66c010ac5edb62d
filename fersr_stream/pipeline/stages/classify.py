"""Classify: the emotion probabilities of every face, in batches gathered across frames."""

from __future__ import annotations

import numpy as np

from ... import crops
from ...classify import Classifier
from ...config import ClassifyConfig
from ...types import Frame
from .base import Stage


class ClassifyStage(Stage):
    """One classifier forward for the faces of up to ``config.batch`` frames (a forward of several faces costs
    less per face than one each, and fewer, larger hand-offs cost less on few cores).

    ``side``: the side of the crops it will read, for the warm-up (CUDA).
    """

    name = "classify"

    def __init__(self, classifier: Classifier, config: ClassifyConfig, side: int):
        self.classifier, self.side = classifier, side
        self.batch, self.max_wait = config.batch, config.max_wait

    def start(self) -> None:
        self.classifier.warm_up(self.side)

    def process(self, frames: list[Frame]) -> list[Frame]:
        counts = [len(f.faces) for f in frames]
        if not sum(counts):
            return frames
        probs = self.classifier.classify(crops.cat([f.faces.crops for f in frames if len(f.faces)]))
        bounds = np.cumsum([0] + counts)
        # a frame without faces stays as it is, whatever it was batched with
        return [f.replace(faces=f.faces.replace(probs=probs[a:b])) if b > a else f
                for f, a, b in zip(frames, bounds, bounds[1:])]
