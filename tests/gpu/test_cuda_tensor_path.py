"""The tensor path on CUDA: frames uploaded once (pinned, side stream) or decoded there by DALI, crops, degradation,
restoration and classification on the GPU, one copy back per frame -- against the host path on the CPU.

Skipped without CUDA (see conftest.py); the unit tests run the same code on the CPU (tests/unit/test_crops.py,
tests/unit/pipeline/test_stages.py and the device cases of each network's tests).
"""

from __future__ import annotations

import importlib.util
import threading

import cv2
import numpy as np
import pytest
import torch

from fersr_stream import align, classify, degrade, resize
from fersr_stream import config as cfg
from fersr_stream.bench.gpu import TruthDetector
from fersr_stream.config import DetectConfig, EnhanceConfig
from fersr_stream.crops import DeviceCrops, HostCrops
from fersr_stream.detect import Detector
from fersr_stream.detect.retinaface import RetinaFaceDetector, build_retinaface
from fersr_stream.enhance import BicubicEnhancer, create
from fersr_stream.pipeline import stages as stage_builder
from fersr_stream.pipeline.models import Models
from fersr_stream.pipeline.runner import Input, Runner, run_serially
from fersr_stream.pipeline.stats import Stats
from fersr_stream.pipeline.transfer import Transfers
from fersr_stream.sinks import Sink
from fersr_stream.sources import open_source
from fersr_stream.testing import random_weights
from fersr_stream.types import Faces

CUDA = torch.device("cuda")
needs_dali = pytest.mark.skipif(importlib.util.find_spec("nvidia.dali") is None,
                                reason="NVIDIA DALI is not installed (pip install -e '.[dali]')")


def nchw(images: np.ndarray, device=CUDA) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device)


def on_gpu(images: np.ndarray) -> DeviceCrops:
    return DeviceCrops(nchw(images))


def nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(0, 2, 3, 1).cpu().numpy()


@pytest.fixture()
def crops(astronaut) -> np.ndarray:
    return np.stack([cv2.resize(astronaut[30:230, 130:330], (96, 96), interpolation=cv2.INTER_AREA),
                     cv2.resize(astronaut, (96, 96), interpolation=cv2.INTER_AREA)])


def test_the_one_rule_puts_cuda_on_the_tensor_path():
    models = Models(None, None, classify.load(None, "cuda"))
    assert stage_builder.on_device(models) is True


def test_resize_on_cuda_equals_the_cpu(astronaut):
    image = nchw(astronaut[None])
    for method in ("area", "bicubic", "bilinear", "lanczos"):
        on_gpu = resize.to_uint8(resize.resize(image, (77, 131), method)).cpu()
        on_cpu = resize.to_uint8(resize.resize(image.cpu(), (77, 131), method))
        assert (on_gpu.int() - on_cpu.int()).abs().max() <= 1


def test_degrade_torch_on_cuda_agrees_with_degrade(crops):
    diffs = {}
    for preset in ("resize", "blur", "jpeg", "blur-noise-jpeg"):
        config = degrade.preset(preset, 16)
        ours = degrade.degrade_torch(nchw(crops), config)
        assert ours.is_cuda and ours.dtype == torch.uint8 and ours.shape == (2, 3, 96, 96)
        if not config.noise:  # noisy ones: other draws than numpy's
            diff = np.abs(nhwc(ours).astype(int) - degrade.degrade(crops, config))
            diffs[preset] = (int(diff.max()), round(float(diff.mean()), 3))
    # the same tensor code on the CPU gives at most 4 levels, 0.28 on average (JPEG spreads the resizes' odd
    # level); nvJPEG in the JPEG step gave 5.7 on average on an H200, so the step runs the host's codec
    assert all(most <= 6 and mean < 0.4 for most, mean in diffs.values()), diffs


def test_transfers_round_trip_through_pinned_memory():
    transfers = Transfers(CUDA)
    images = [np.random.default_rng(i).integers(0, 256, (270, 480, 3), dtype=np.uint8) for i in range(3)]
    uploaded = transfers.upload(images)
    assert all(t.is_cuda and t.shape == (3, 270, 480) for t in uploaded)
    doubled = [(t.int() * 2 % 256).to(torch.uint8) for t in uploaded]  # compute on the default stream
    pending = transfers.download([t.permute(1, 2, 0) for t in doubled])
    for back, image in zip(pending.wait(), images):
        np.testing.assert_array_equal(back, (image.astype(int) * 2 % 256).astype(np.uint8))


def test_restorer_on_cuda_gives_device_crops_what_it_gives_host_crops(tmp_path, crops):
    weights = random_weights.save_restoreformer(tmp_path / "RestoreFormer.pth")
    enhancer = create(EnhanceConfig(name="restoreformer", weights=str(weights), batch=2), "cuda")
    big = np.stack([cv2.resize(c, (512, 512), interpolation=cv2.INTER_CUBIC) for c in crops])
    on_device = enhancer.enhance(on_gpu(big)).images
    assert on_device.is_cuda and on_device.shape == (2, 3, 512, 512)
    np.testing.assert_array_equal(nhwc(on_device), enhancer.enhance(HostCrops(big)).images)
    enhancer.fp16 = False
    fp32 = enhancer.enhance(on_gpu(big)).images
    assert (fp32.int() - on_device.int()).abs().float().mean() < 4  # fp16 autocast vs fp32


def test_compiled_restorer_on_cuda(tmp_path, crops):
    weights = random_weights.save_restoreformer(tmp_path / "RestoreFormer.pth")
    big = on_gpu(np.stack([cv2.resize(crops[0], (512, 512), interpolation=cv2.INTER_CUBIC)]))
    eager = create(EnhanceConfig(name="restoreformer", weights=str(weights)), "cuda").enhance(big).images
    compiled = create(EnhanceConfig(name="restoreformer", weights=str(weights), compile=True), "cuda")
    assert (compiled.enhance(big).images.int() - eager.int()).abs().float().mean() < 1


def test_classifier_on_cuda_crops(crops):
    on_cpu = classify.load(None, "cpu").classify(HostCrops(crops))
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        on_cuda = classify.load(None, "cuda").classify(on_gpu(crops))
    np.testing.assert_allclose(on_cuda, on_cpu, atol=1e-3)


def test_cutting_crops_only_queues_work_on_the_gpu(astronaut):
    """No copy that waits for the stream (pageable host memory, a read back): the crop stage must not wait for the
    restorer's batch queued before it."""
    faces = Faces(np.array([[150, 40, 300, 190], [440, 400, 560, 520]], np.float32), np.ones(2, np.float32))
    affines = align.face_affines(faces, 128)
    reference = align.crop(astronaut, affines, 128)  # OpenCV; the second face runs past the frame
    frame = nchw(astronaut[None])[0]
    first = align.crop_torch(frame, affines, 128)  # the border grey is uploaded once, here
    torch.cuda.set_sync_debug_mode("error")
    try:
        again = align.crop_torch(frame, affines, 128)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(again, first)
    assert np.abs(nhwc(first) - reference).mean() < 0.5


def test_retinaface_on_cuda_frames(astronaut):
    torch.manual_seed(0)
    detector = RetinaFaceDetector(DetectConfig(name="retinaface", score_threshold=0.5, detect_width=240), "cuda",
                                  net=build_retinaface("mobilenet0.25"))
    frame = cv2.resize(astronaut, (400, 300))
    (ref,) = detector.detect([frame])
    (ours,) = detector.detect_tensors([nchw(frame[None])[0]])
    assert len(ours) == len(ref) > 0
    np.testing.assert_allclose(ours.boxes, ref.boxes, atol=1e-3)


@pytest.fixture()
def clip(tmp_path, astronaut_face):
    from fersr_stream.testing import synthetic

    path = tmp_path / "clip.mp4"
    boxes = synthetic.write_clip(path, [astronaut_face] * 2, n_frames=6, width=320, height=240, fps=10,
                                 min_size=70, max_size=100)
    with open_source(str(path)) as source:
        frames = list(source)
    return path, frames, boxes


def _serial(config, models, frames, tensor_path):
    built = stage_builder.build(config, models, sinks=[[]], stats=Stats(), stop=threading.Event(),
                                tensor_path=tensor_path)
    return run_serially(built, frames)


def test_stream_on_cuda_matches_the_host_path_on_the_cpu(clip):
    path, frames, boxes = clip
    config = cfg.load(None, [f"source.uri={path}", "enhance.name=bicubic", "degrade.width=40", "degrade.blur=0.5",
                             "overlay.inset=true", "overlay.paste=true", "align.size=128"])
    detector = TruthDetector(frames, boxes)
    host = _serial(config, Models(detector, BicubicEnhancer(512), classify.load(None, "cpu")), frames, False)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        gpu = _serial(config, Models(detector, BicubicEnhancer(512, CUDA), classify.load(None, "cuda")),
                      frames, None)  # the device's own rule: CUDA takes the tensor path
    for a, b in zip(host, gpu):
        np.testing.assert_array_equal(b.faces.boxes, a.faces.boxes)
        np.testing.assert_allclose(b.faces.probs, a.faces.probs, atol=0.02)
        assert b.device_image is None and isinstance(b.faces.crops, HostCrops)
        assert np.abs(b.faces.crops.images.astype(int) - a.faces.crops.images).mean() < 0.5


class _KnownOnDevice(Detector):
    """The clip's true boxes, frame after frame, to a stream whose frames reach the detector as CUDA tensors; the
    wrapped device detector still runs on each batch."""

    reads_tensors = True

    def __init__(self, detector, boxes: np.ndarray):
        self.detector, self._boxes = detector, iter(boxes.astype(np.float32))

    def detect(self, images):
        raise AssertionError("the frames should reach the detector on the GPU")

    def detect_tensors(self, images: list[torch.Tensor]) -> list[Faces]:
        assert all(image.is_cuda for image in images)
        self.detector.detect_tensors(images)
        boxes = [next(self._boxes) for _ in images]
        return [Faces(b, np.ones(len(b), np.float32)) for b in boxes]


@needs_dali
def test_dali_frames_stay_on_the_gpu_through_the_stream(clip):
    from fersr_stream.sources.dali import DaliSource

    path, frames, boxes = clip
    config = cfg.load(None, [f"source.uri={path}", "enhance.name=bicubic", "degrade.width=24"])
    retinaface = RetinaFaceDetector(DetectConfig(name="retinaface", score_threshold=0.99), "cuda",
                                    net=build_retinaface("mobilenet0.25"))  # random weights: run, not believed
    models = Models(_KnownOnDevice(retinaface, boxes), BicubicEnhancer(512, CUDA), classify.load(None, "cuda"))
    with DaliSource(path, device="cuda", sequence=4) as source:  # what the runner reads: tensors, no host copy
        read = source.frames(stage_builder.on_device(models))
        first = next(read)
        read.close()
    assert first.image is None and first.device_image.is_cuda and first.device_image.shape == (3, 240, 320)
    written = []

    class Collect(Sink):
        def write(self, frame):
            written.append(frame)

        def close(self):
            pass

    stats = Stats()
    built = stage_builder.build(config, models, sinks=[[Collect()]], stats=stats, stop=threading.Event())
    with DaliSource(path, device="cuda", sequence=4) as source:
        Runner([Input(source.frames(stage_builder.on_device(models)))], built, stats=stats).run()
    assert [f.index for f in written] == list(range(6))
    # the same stages on the host path, over PyAV's frames and the same boxes
    host_models = Models(TruthDetector(frames, boxes), BicubicEnhancer(512), classify.load(None, "cpu"))
    host = _serial(config, host_models, frames, False)
    for ours, ref in zip(written, host):  # cut, degraded, enlarged and classified on the GPU, copied back once
        assert ours.image.shape == (240, 320, 3) and ours.device_image is None
        assert len(ours.faces) == 2 and ours.faces.probs.shape == (2, 7)
        np.testing.assert_allclose(ours.faces.probs, ref.faces.probs, atol=0.05)  # DALI's decode is not PyAV's
        assert np.abs(ours.image.astype(int) - ref.image).mean() < 3  # both with boxes and labels drawn
