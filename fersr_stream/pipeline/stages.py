"""The stream's stages, built from a :class:`StreamConfig`: the data flow in one place.

``read -> detect -> track -> crop (align + degrade) -> enhance -> classify -> smooth -> overlay -> write``

Two paths, picked once by :func:`fersr_stream.device.uses_tensor_path` (tests may force the tensor path on the CPU):

- host path (CPU): frames and crops are numpy arrays; OpenCV warps, resizes and degrades (~10x faster than
  torch's grid sampling on a CPU).
- tensor path (CUDA): each frame goes to the GPU once (uploaded from pinned memory on a side stream, or already
  there from DALI) as ``Frame.device_image``; crops are cut, degraded, restored and classified there as
  ``Faces.device_processed`` tensors. Boxes and probabilities are small and stay numpy. The overlay
  is the one place that copies back, once per frame (pinned, asynchronous): the frame when it was decoded on the
  GPU, and the processed crops when the inset or paste-back draws them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from .. import align, degrade, overlay
from .. import resize as _resize
from ..config import StreamConfig
from ..detect.follow import following
from ..device import uses_tensor_path
from ..track import Smoother, Tracker
from ..types import Frame
from .reuse import RestorePolicy
from .runner import Stage
from .stats import Stats
from .transfer import Transfers, tensor_frames


CLASSIFIER_OVERSAMPLING = 4  # crop side / classifier input side, where only the classifier reads the crops
DETECT_BATCH = 4  # most frames the detect stage takes at once


def _per_frame(fn):
    """Lift ``fn(frame) -> frame`` to a stage function over a batch of frames."""
    return lambda frames: [fn(f) for f in frames]


def on_device(models, tensor_path: bool | None = None) -> bool:
    """Whether the stages keep frames and crops as tensors: ``tensor_path`` when given, else the device's rule."""
    return uses_tensor_path(torch.device(models.classifier.device)) if tensor_path is None else tensor_path


def crop_side(config: StreamConfig, classifier) -> int:
    """Side of the aligned face crops: ``align.size`` where a restorer, the low-resolution simulation or the
    paste-back reads them. Where only the classifier (and the inset) does, the side whose centre crop (the
    classifier's ``preprocessing.crop``) is :data:`CLASSIFIER_OVERSAMPLING` times the classifier's input side, when
    that is smaller: the shrink to the input is then a 4x4 box average, and the cut costs a fraction. The
    mini-Xception gets 320 px crops instead of 512: ~1 ms less per face on one CPU core here, and on the astronaut
    its input is at most 8 levels, 0.5 on average, from the one the 512 px crop gives."""
    full = config.align.size
    p = classifier.preprocessing
    if config.enhance.name != "none" or config.degrade.width is not None or config.overlay.paste or p.size is None:
        return full
    return min(full, round(CLASSIFIER_OVERSAMPLING * p.size / p.crop))


def warm_ups(models, side: int, frame_size: tuple[int, int] | None = None) -> dict[str, Callable[[], None]]:
    """Start hooks (:attr:`Stage.start`) for the stages that run a network, by stage name; none on a CPU.

    On CUDA each hook runs one batch of each shape its network will run, on the stage's own thread, before the
    first frame: the classifier's and restorer's padded batches (their ``rows``) of ``side``-pixel crops, and the
    device detector's batches of 1 to :data:`DETECT_BATCH` frames of ``frame_size`` (width, height; None when the
    frames differ in size). PyTorch builds cuDNN's plan for a convolution on a thread's first call of each shape
    and keeps it for that thread alone, so a warm-up on another thread does not help. On an H200 the
    mini-Xception's first batch on a new thread took 1.2-1.5 s (plans for 23 convolutions), GFPGAN's 0.14 s.
    """
    from ..enhance.restorers import RestorerEnhancer

    device = torch.device(models.classifier.device)
    if device.type != "cuda":
        return {}

    def padded_batches(network) -> list[torch.Tensor]:
        rows = sorted({network.rows(n) for n in range(1, network.batch + 1)})
        return [torch.zeros((n, 3, side, side), dtype=torch.uint8, device=device) for n in rows]

    def classify() -> None:
        for crops in padded_batches(models.classifier):
            models.classifier.classify_tensor(crops)

    def enhance() -> None:
        for crops in padded_batches(models.enhancer):
            models.enhancer.enhance_tensor(crops)

    def detect() -> None:
        frame = torch.zeros((3, frame_size[1], frame_size[0]), dtype=torch.uint8, device=device)
        for n in range(1, DETECT_BATCH + 1):
            models.detector.detect_tensors([frame] * n)

    hooks = {"classify": classify}
    if isinstance(models.enhancer, RestorerEnhancer):  # bicubic has no network to warm
        hooks["enhance"] = enhance
    if frame_size is not None and hasattr(models.detector, "detect_tensors"):
        hooks["detect"] = detect
    return hooks


def source_frames(source, models, tensor_path: bool | None = None):
    """What the runner reads from ``source``: on the tensor path a DALI source hands its frames over as tensors
    where it decoded them (no host copy); every other source is read as it is."""
    if on_device(models, tensor_path) and hasattr(source, "iter_tensors"):
        return tensor_frames(source)
    return source


def build(config: StreamConfig, models, *, sinks: list, stats: Stats, stop: threading.Event,
          tensor_path: bool | None = None, stills: bool = False,
          frame_size: tuple[int, int] | None = None) -> list[Stage]:
    """Stage list for the runner.

    ``models`` holds detector, enhancer (None when ``enhance.name == "none"``) and classifier (see
    ``session.load_models``); ``sinks`` each have write/close; a sink whose
    ``closed_by_user`` turns true (a window closed with q/Esc) sets ``stop``. ``tensor_path`` forces the tensor
    path on or off (None = :func:`on_device`'s rule: on for CUDA); the compute device is the classifier's.
    ``stills``: the frames are unrelated pictures (images, folders), so nothing carries over from one to the next:
    the detector searches each one whole instead of following faces, each picture's faces get track ids of their
    own (from 0), and no emotion is smoothed and no restoration reused across pictures. ``frame_size``: (width,
    height) of every frame, when known (the detector's warm-up needs it; see :func:`warm_ups`).
    """
    enhancer, classifier = models.enhancer, models.classifier
    detector = following(models.detector, config.detect.full_every, stills)
    tensors = on_device(models, tensor_path)
    device = torch.device(classifier.device)
    tracker = Tracker(config.track.iou, config.track.max_age)
    smoother = Smoother(0.0 if stills else config.track.smooth, config.track.max_age)
    rng = np.random.default_rng(config.degrade.seed)
    size, margin = crop_side(config, classifier), config.align.margin
    transfers = Transfers(device) if tensors else None
    noise = torch.Generator(device=device).manual_seed(config.degrade.seed) if tensors else None
    start = warm_ups(models, size, None if stills else frame_size)

    def detect(frames: list[Frame]) -> list[Frame]:
        found = detector.detect([f.image for f in frames])
        return [f.replace(faces=faces) for f, faces in zip(frames, found)]

    def detect_on_device(frames: list[Frame]) -> list[Frame]:
        uploads = iter(transfers.upload([f.image for f in frames if f.device_image is None]))
        frames = [f if f.device_image is not None else f.replace(device_image=next(uploads)) for f in frames]
        if hasattr(detector, "detect_tensors"):
            found = detector.detect_tensors([f.device_image for f in frames])
        else:
            # OpenCV detectors (Haar, YuNet) read the host frame; a GPU-decoded frame is fetched for them once,
            # and the overlay then draws on that copy instead of fetching it again
            frames = _with_host_images(frames)
            found = detector.detect([f.image for f in frames])
        return [f.replace(faces=faces) for f, faces in zip(frames, found)]

    def _with_host_images(frames: list[Frame]) -> list[Frame]:
        missing = [f for f in frames if f.image is None]
        fetched = iter(transfers.download([f.device_image.permute(1, 2, 0) for f in missing]).wait())
        return [f if f.image is not None else f.replace(image=next(fetched)) for f in frames]

    def track(frame: Frame) -> Frame:
        fresh = Tracker(config.track.iou, config.track.max_age) if stills else tracker
        return frame.replace(faces=fresh.update(frame.faces))

    def crop(frame: Frame) -> Frame:
        faces = align.crop(frame.image, frame.faces, size, margin)
        if config.degrade.width is None or not len(faces):
            return frame.replace(faces=faces.replace(processed=faces.crops))
        # the classifier sees the low-resolution face enlarged; a restorer starts from the small image itself
        lowres = degrade.downsample(faces.crops, config.degrade.width, config.degrade, rng)
        processed = degrade.enlarge(lowres, faces.crops.shape[1:3], config.degrade)
        return frame.replace(faces=faces.replace(processed=processed, lowres=lowres))

    def crop_on_device(frame: Frame) -> Frame:
        faces = frame.faces
        affines = align.face_affines(faces, size, margin)
        if len(faces):
            cut = align.crop_torch(frame.device_image.to(device), affines, size)
            crops = _resize.to_uint8(cut)  # stored as uint8, as the host path stores its crops
            if config.degrade.width is not None:
                lowres = degrade.downsample_torch(crops, config.degrade, noise)
                crops = degrade.enlarge_torch(lowres, (size, size), config.degrade)
                faces = faces.replace(device_lowres=lowres)
        else:
            crops = torch.zeros((0, 3, size, size), dtype=torch.uint8, device=device)
        return frame.replace(faces=faces.replace(affines=affines, device_processed=crops))

    def classify(frames: list[Frame]) -> list[Frame]:
        counts = [len(f.faces) for f in frames]
        if not sum(counts):
            return frames
        if tensors:
            probs = classifier.classify_tensor(torch.cat([f.faces.device_processed for f in frames if len(f.faces)]))
        else:
            probs = classifier.classify(np.concatenate([f.faces.processed for f in frames if len(f.faces)]))
        bounds = np.cumsum([0] + counts)
        # a frame without faces stays as it is, whatever it was batched with
        return [f.replace(faces=f.faces.replace(probs=probs[a:b])) if b > a else f
                for f, a, b in zip(frames, bounds, bounds[1:])]

    def draw(frame: Frame) -> Frame:
        image = frame.image  # the pipeline's own frame: drawn on in place
        if config.overlay.paste and frame.faces.restored is not None and frame.faces.restored.any():
            done = frame.faces.select(frame.faces.restored)
            image = align.paste_back(image, done.processed, done.affines)
        return frame.replace(image=overlay.annotate(image, frame.faces, inset=config.overlay.inset, copy=False))

    wants_crops = config.overlay.inset or config.overlay.paste

    def draw_on_device(frames: list[Frame]) -> list[Frame]:
        # start every frame's copy back before drawing the first, so copies overlap the drawing
        pending = []
        for frame in frames:
            faces = frame.faces
            fetch = [] if frame.image is not None else [frame.device_image.permute(1, 2, 0)]
            if wants_crops and len(faces):
                fetch.append(faces.device_processed.permute(0, 2, 3, 1))
            pending.append(transfers.download(fetch))
        out = []
        for frame, copies in zip(frames, pending):
            copies = copies.wait()
            image = frame.image if frame.image is not None else copies.pop(0)
            processed = copies.pop(0) if copies else None
            # the device tensors are dropped here, so their GPU memory is free once the frame has been drawn
            faces = frame.faces.replace(processed=processed, device_processed=None)
            out.append(draw(frame.replace(image=image, device_image=None, faces=faces)))
        return out

    def write(frames: list[Frame]) -> list[Frame]:
        for frame in frames:
            for sink in sinks:
                sink.write(frame)
                if getattr(sink, "closed_by_user", False):
                    stop.set()
        return frames

    def close_sinks() -> None:
        errors = []
        for sink in sinks:  # each one, whatever the others do: a failing disk must not keep the others open
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - the first is raised once all are closed
                errors.append(exc)
        if errors:
            raise errors[0]

    stages = [
        Stage("detect", detect_on_device if tensors else detect, batch=DETECT_BATCH, start=start.get("detect")),
        Stage("track", _per_frame(track)),
        Stage("crop", _per_frame(crop_on_device if tensors else crop)),
    ]
    if enhancer is not None:
        reuse_every = 0 if stills else config.enhance.reuse_every
        policy = RestorePolicy(config.enhance.below, reuse_every, config.enhance.reuse_iou)
        restore = enhancer.enhance_tensor if tensors else enhancer.enhance

        def enhance(frames: list[Frame]) -> list[Frame]:
            out, made, reused = policy.apply(frames, restore, on_device=tensors)
            stats.count("restorations", made)
            stats.count("reuses", reused)
            return out

        stages.append(Stage("enhance", enhance, batch=config.enhance.batch, max_wait=config.enhance.max_wait,
                            start=start.get("enhance")))
    stages += [
        Stage("classify", classify, batch=config.classify.batch, max_wait=config.classify.max_wait,
              start=start.get("classify")),
        Stage("smooth", _per_frame(lambda f: f.replace(faces=smoother.update(f.faces)))),
        # the tensor path takes what is queued (up to 4 frames) so their copies back are in flight together
        Stage("overlay", draw_on_device, batch=4) if tensors else Stage("overlay", _per_frame(draw)),
        Stage("write", write, close=close_sinks),
    ]
    return stages
