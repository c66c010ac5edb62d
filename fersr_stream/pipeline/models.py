"""The networks of one stream: loaded once, after the settings are checked, and shared by its stages."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..classify import Classifier
from ..config import StreamConfig
from ..detect import Detector
from ..enhance import Enhancer


@dataclass
class Models:
    """Attributes: the face detector; the enhancer, None when ``enhance.name`` is none (no enhance stage); the
    emotion classifier, whose device is the stream's compute device."""

    detector: Detector
    enhancer: Enhancer | None
    classifier: Classifier


def load_models(config: StreamConfig, device: torch.device) -> Models:
    """Detector, enhancer and classifier. Weights the run needs and the cache lacks are downloaded here, once the
    settings are checked and before anything is built (constructors never download)."""
    from .. import classify, detect, enhance

    detect.fetch(config.detect)
    enhance.fetch(config.enhance)
    return Models(detect.create(config.detect, device),
                  enhance.create(config.enhance, device) if config.enhance.name != "none" else None,
                  classify.load(config.classify.weights, device, batch=config.classify.batch))
