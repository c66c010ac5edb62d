"""The stream's stages, built from a :class:`StreamConfig`: the data flow in one place.

``read -> detect -> track -> crop (align + degrade) -> enhance -> classify -> smooth -> overlay -> write``
"""

from __future__ import annotations

import threading

import numpy as np

from .. import align, degrade, overlay
from ..config import StreamConfig
from ..track import Smoother, Tracker
from ..types import Frame
from .reuse import RestorePolicy
from .runner import Stage
from .stats import Stats


def _per_frame(fn):
    """Lift ``fn(frame) -> frame`` to a stage function over a batch of frames."""
    return lambda frames: [fn(f) for f in frames]


def build(config: StreamConfig, models, *, sinks: list, stats: Stats, stop: threading.Event) -> list[Stage]:
    """Stage list for the runner.

    ``models`` holds detector, enhancer (None when ``enhance.name == "none"``) and classifier (see
    ``session.load_models``); ``sinks`` each have write/close; a sink whose
    ``closed_by_user`` turns true (a window closed with q/Esc) sets ``stop``.
    """
    detector, enhancer, classifier = models.detector, models.enhancer, models.classifier
    tracker = Tracker(config.track.iou, config.track.max_age)
    smoother = Smoother(config.track.smooth, config.track.max_age)
    rng = np.random.default_rng(config.degrade.seed)

    def detect(frames: list[Frame]) -> list[Frame]:
        found = detector.detect([f.image for f in frames])
        return [f.replace(faces=faces) for f, faces in zip(frames, found)]

    def crop(frame: Frame) -> Frame:
        faces = align.crop(frame.image, frame.faces, config.align.size, config.align.margin)
        processed = faces.crops
        if config.degrade.width is not None and len(faces):
            processed = degrade.degrade(faces.crops, config.degrade, rng)
        return frame.replace(faces=faces.replace(processed=processed))

    def classify(frames: list[Frame]) -> list[Frame]:
        counts = [len(f.faces) for f in frames]
        if not sum(counts):
            return frames
        probs = classifier.classify(np.concatenate([f.faces.processed for f in frames if len(f.faces)]))
        bounds = np.cumsum([0] + counts)
        return [f.replace(faces=f.faces.replace(probs=probs[a:b])) for f, a, b in zip(frames, bounds, bounds[1:])]

    def draw(frame: Frame) -> Frame:
        image = frame.image
        if config.overlay.paste and frame.faces.restored is not None and frame.faces.restored.any():
            done = frame.faces.select(frame.faces.restored)
            image = align.paste_back(image, done.processed, done.affines)
        return frame.replace(image=overlay.annotate(image, frame.faces, inset=config.overlay.inset))

    def write(frames: list[Frame]) -> list[Frame]:
        for frame in frames:
            for sink in sinks:
                sink.write(frame)
                if getattr(sink, "closed_by_user", False):
                    stop.set()
        return frames

    def close_sinks() -> None:
        for sink in sinks:
            sink.close()

    stages = [
        Stage("detect", detect, batch=4, max_wait=0.0),
        Stage("track", _per_frame(lambda f: f.replace(faces=tracker.update(f.faces)))),
        Stage("crop", _per_frame(crop)),
    ]
    if enhancer is not None:
        policy = RestorePolicy(config.enhance.below, config.enhance.reuse_every, config.enhance.reuse_iou)

        def enhance(frames: list[Frame]) -> list[Frame]:
            out, made, reused = policy.apply(frames, enhancer.enhance)
            stats.count("restorations", made)
            stats.count("reuses", reused)
            return out

        stages.append(Stage("enhance", enhance, batch=config.enhance.batch, max_wait=config.enhance.max_wait))
    stages += [
        Stage("classify", classify, batch=config.classify.batch, max_wait=0.0),
        Stage("smooth", _per_frame(lambda f: f.replace(faces=smoother.update(f.faces)))),
        Stage("overlay", _per_frame(draw)),
        Stage("write", write, close=close_sinks),
    ]
    return stages
