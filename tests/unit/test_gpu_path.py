"""The tensor path (frames on the GPU) run on the CPU: every piece against its host twin, and the whole stage chain
forced onto the tensor path against the host path on the same clip. tests/gpu/test_cuda_tensor_path.py repeats the
comparisons on CUDA."""

from __future__ import annotations

import dataclasses
import importlib.util
import threading

import cv2
import numpy as np
import pytest
import torch

from fersr_stream import classify, degrade, resize
from fersr_stream import config as cfg
from fersr_stream import device as devices
from fersr_stream.config import DegradeConfig, DetectConfig, EnhanceConfig
from fersr_stream.detect.retinaface import RetinaFaceDetector, build_retinaface
from fersr_stream.enhance import BicubicEnhancer, IdentityEnhancer, create, random_weights
from fersr_stream.enhance.restorers import GFPGANEnhancer
from fersr_stream.pipeline import session
from fersr_stream.pipeline import stages as stage_builder
from fersr_stream.pipeline.runner import run_serially
from fersr_stream.pipeline.runner import Runner
from fersr_stream.pipeline.stats import Stats
from fersr_stream.pipeline.transfer import Transfers, tensor_frames
from fersr_stream.sources import open_source
from fersr_stream.types import Faces, Frame

CV2 = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
       "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


def nhwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def crops(astronaut) -> np.ndarray:
    """(3, 96, 96, 3) uint8: the astronaut's face, her whole picture, and a flat grey square with a bright bar."""
    flat = np.full((96, 96, 3), 120, np.uint8)
    flat[40:56] = 230
    return np.stack([cv2.resize(astronaut[30:230, 130:330], (96, 96), interpolation=cv2.INTER_AREA),
                     cv2.resize(astronaut, (96, 96), interpolation=cv2.INTER_AREA), flat])


# --- resize: OpenCV's weights as matrices --------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(CV2))
@pytest.mark.parametrize("size", [(16, 16), (11, 29), (80, 120), (100, 30)])
def test_resize_matches_opencv(astronaut, method, size):
    image = cv2.resize(astronaut, (53, 37), interpolation=cv2.INTER_AREA)
    ours = resize.to_uint8(resize.resize(nchw(image[None]), size, method))
    ref = cv2.resize(image, size[::-1], interpolation=CV2[method])
    diff = np.abs(nhwc(ours)[0].astype(int) - ref)
    assert diff.max() <= 1 and diff.mean() < 0.2  # OpenCV rounds some uint8 results in fixed point


def test_resize_area_shrink_is_exact_average():
    image = torch.arange(36, dtype=torch.float32).reshape(1, 1, 6, 6)
    out = resize.resize(image, (2, 3), "area")
    assert torch.equal(out, torch.nn.functional.avg_pool2d(image, (3, 2)))
    assert resize.weights(5, 3, "area").sum(axis=1) == pytest.approx(np.ones(3))


def test_resize_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown resize method 'cubic'"):
        resize.resize(torch.zeros(1, 1, 4, 4), (2, 2), "cubic")


# --- degradation -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["resize", "blur", "jpeg"])
@pytest.mark.parametrize("width", [16, 37])
def test_degrade_torch_agrees_with_degrade(crops, preset, width):
    config = degrade.preset(preset, width)
    ref = degrade.degrade(crops, config)
    ours = degrade.degrade_torch(nchw(crops), config)
    assert ours.dtype == torch.uint8 and ours.shape == (3, 3, 96, 96)
    diff = np.abs(nhwc(ours).astype(int) - ref)
    # OpenCV rounds its uint8 blur and area shrink in fixed point: a level here and there, which enlarging
    # (and JPEG, where a level can flip a quantised coefficient) spreads to a few levels at a few pixels
    assert diff.max() <= 6 and diff.mean() < 0.25
    # and it is not a no-op: the degradation itself changed the crops far more than the two paths differ
    assert np.abs(ref.astype(int) - crops).mean() > 10 * max(diff.mean(), 0.1)


def test_degrade_torch_keeps_float_input_float(crops):
    config = degrade.preset("blur", 24)
    as_uint8 = degrade.degrade_torch(nchw(crops), config)
    as_float = degrade.degrade_torch(nchw(crops).float() + 0.2, config)  # rounded to the same uint8 first
    assert as_float.dtype == torch.float32 and torch.equal(as_float, as_uint8.float())
    unchanged = nchw(crops)
    assert degrade.degrade_torch(unchanged, DegradeConfig(width=None)) is unchanged


def test_degrade_torch_noise_has_the_asked_spread_and_follows_its_generator():
    grey = torch.full((2, 3, 64, 64), 128, dtype=torch.uint8)
    # width = crop width: the shrink is the identity, so only the noise changes the pixels
    config = DegradeConfig(width=64, noise=8.0, interpolation="bilinear")
    noisy = degrade.degrade_torch(grey, config, torch.Generator().manual_seed(1)).float() - 128
    assert noisy.std().item() == pytest.approx(8.0, rel=0.05) and abs(noisy.mean().item()) < 0.2
    again = degrade.degrade_torch(grey, config, torch.Generator().manual_seed(1))
    assert torch.equal(again.float() - 128, noisy)
    shared = torch.Generator().manual_seed(1)
    first, second = (degrade.degrade_torch(grey, config, shared) for _ in range(2))
    assert not torch.equal(first, second)  # one generator per stream: every frame gets new noise
    assert torch.equal(degrade.degrade_torch(grey, config), degrade.degrade_torch(grey, config))  # seeded default


def test_degrade_torch_rejects_bad_input(crops):
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) RGB crops, got \(3, 96, 96, 3\)"):
        degrade.degrade_torch(torch.from_numpy(crops), degrade.preset("resize", 16))


# --- enhancers -------------------------------------------------------------------------------------------------------


def test_baseline_enhancers_tensor_entry_points(crops):
    bicubic = BicubicEnhancer(512)
    ours = bicubic.enhance_tensor(nchw(crops))
    assert ours.shape == (3, 3, 512, 512) and ours.dtype == torch.uint8
    assert np.abs(nhwc(ours).astype(int) - bicubic.enhance(crops)).max() <= 1
    small = BicubicEnhancer(48).enhance_tensor(nchw(crops))  # shrinking averages areas, as the host path
    assert np.abs(nhwc(small).astype(int) - BicubicEnhancer(48).enhance(crops)).max() <= 1
    same = nchw(crops)
    assert IdentityEnhancer().enhance_tensor(same) is same
    with pytest.raises(ValueError, match="expected \\(N, 3, S, S\\) uint8"):
        bicubic.enhance_tensor(same.float())


@pytest.fixture(scope="module")
def narrow_gfpgan():
    """A random-init GFPGAN at 1/16 width (the real module and code path, ~0.5 s per face on a CPU), batching
    two faces per forward as on CUDA."""
    enhancer = GFPGANEnhancer(random_weights.gfpgan_network(narrow=0.0625), EnhanceConfig(name="gfpgan", batch=2),
                              torch.device("cpu"))
    enhancer.batch = 2
    return enhancer


def test_restorer_tensor_entry_point_matches_the_array_one(narrow_gfpgan, crops):
    big = np.stack([cv2.resize(c, (512, 512), interpolation=cv2.INTER_CUBIC) for c in crops[:2]])
    on_host = narrow_gfpgan.enhance(big)
    on_device = narrow_gfpgan.enhance_tensor(nchw(big))
    assert on_device.shape == (2, 3, 512, 512) and on_device.dtype == torch.uint8
    np.testing.assert_array_equal(nhwc(on_device), on_host)  # the same forward, batching and rounding
    assert np.abs(on_host.astype(int) - big).mean() > 5  # a random network does change the faces
    # other crop sides are resized on the device with OpenCV's bicubic weights, so the result barely moves
    resized = nhwc(narrow_gfpgan.enhance_tensor(nchw(crops[2:]))).astype(int)
    assert np.abs(resized - narrow_gfpgan.enhance(crops[2:])).mean() < 0.5
    assert narrow_gfpgan.enhance_tensor(torch.zeros((0, 3, 512, 512), dtype=torch.uint8)).shape == (0, 3, 512, 512)


def test_batch_rows_pad_to_powers_of_two_on_cuda_only():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert [devices.batch_rows(n, 16, cuda) for n in range(1, 18)] == [1, 2, 4, 4, 8, 8, 8, 8] + [16] * 8 + [17]
    assert [devices.batch_rows(n, 12, cuda) for n in (5, 9, 12)] == [8, 12, 12]  # capped by the batch
    assert [devices.batch_rows(n, 16, cpu) for n in (1, 3, 9)] == [1, 3, 9]
    x = torch.arange(6).reshape(3, 2)
    assert devices.padded(x, 3) is x
    assert torch.equal(devices.padded(x, 5), torch.tensor([[0, 1], [2, 3], [4, 5], [0, 0], [0, 0]]))


def test_padded_batches_give_the_same_results(monkeypatch, narrow_gfpgan, crops):
    big = np.stack([cv2.resize(c, (512, 512), interpolation=cv2.INTER_CUBIC) for c in crops])
    classifier = classify.load(None, "cpu", batch=4)
    plain_faces, plain_probs = narrow_gfpgan.enhance_tensor(nchw(big)), classifier.classify(crops)
    asked = []  # the padding CUDA does, forced on the CPU: every chunk runs as 4 rows
    monkeypatch.setattr(narrow_gfpgan, "rows", lambda n: asked.append(n) or 4)
    monkeypatch.setattr(classifier, "rows", lambda n: asked.append(n) or 4)
    # a level at most, as in any other batch (convolutions sum in a batch-dependent order)
    assert (narrow_gfpgan.enhance_tensor(nchw(big)).int() - plain_faces.int()).abs().max() <= 1
    np.testing.assert_allclose(classifier.classify(crops), plain_probs, atol=1e-6)
    assert asked == [2, 1, 3]  # both were padded: GFPGAN's chunks of 2, then the classifier's 3 faces


def test_each_network_says_how_it_pads_on_cuda(monkeypatch, narrow_gfpgan):
    classifier = classify.load(None, "cpu", batch=8)
    assert [classifier.rows(n) for n in (1, 5, 8)] == [1, 5, 8] and narrow_gfpgan.rows(1) == 1  # a CPU: no padding
    monkeypatch.setattr(classifier, "device", torch.device("cuda"))
    monkeypatch.setattr(narrow_gfpgan, "device", torch.device("cuda"))
    assert [classifier.rows(n) for n in (1, 5, 8)] == [8, 8, 8]  # one shape: the full batch
    assert [narrow_gfpgan.rows(n) for n in (1, 2)] == [1, 2]  # powers of two up to its batch of 2


def test_warm_up_hooks_run_each_padded_shape_once_on_cuda_only(monkeypatch, narrow_gfpgan):
    classifier = classify.load(None, "cpu", batch=8)
    seen = []
    monkeypatch.setattr(narrow_gfpgan, "enhance_tensor", lambda crops: seen.append(("enhance", *crops.shape)))
    monkeypatch.setattr(classifier, "classify_tensor", lambda crops: seen.append(("classify", *crops.shape)))
    monkeypatch.setattr(torch, "zeros", lambda shape, **kw: torch.empty(shape, dtype=kw["dtype"]))  # no CUDA here

    class DeviceDetector:
        def detect_tensors(self, frames):
            seen.append(("detect", len(frames), *frames[0].shape))

    def run(models, side, frame_size=None):
        seen.clear()
        hooks = stage_builder.warm_ups(models, side, frame_size)
        for name in ("detect", "enhance", "classify"):
            if name in hooks:
                hooks[name]()
        return sorted(hooks), list(seen)

    assert run(session.Models(None, narrow_gfpgan, classifier), 512) == ([], [])  # a CPU: nothing to warm
    for network in (classifier, narrow_gfpgan):  # their padding as on CUDA
        monkeypatch.setattr(network, "device", torch.device("cuda"))
    hooks, calls = run(session.Models(None, narrow_gfpgan, classifier), 512)
    assert hooks == ["classify", "enhance"]
    assert calls == [("enhance", 1, 3, 512, 512), ("enhance", 2, 3, 512, 512), ("classify", 8, 3, 512, 512)]
    assert run(session.Models(None, BicubicEnhancer(512), classifier), 512)[1] == [("classify", 8, 3, 512, 512)]
    assert run(session.Models(None, None, classifier), 320)[1] == [("classify", 8, 3, 320, 320)]  # classifier-only
    hooks, calls = run(session.Models(DeviceDetector(), None, classifier), 320, frame_size=(64, 48))
    assert hooks == ["classify", "detect"] and calls[:4] == [("detect", n, 3, 48, 64) for n in (1, 2, 3, 4)]
    assert "detect" not in run(session.Models(DeviceDetector(), None, classifier), 320)[0]  # sizes unknown


def test_the_stages_carry_the_warm_up_hooks(monkeypatch, narrow_gfpgan):
    classifier = classify.load(None, "cpu", batch=8)
    config = cfg.load(None, ["enhance.name=gfpgan"])
    models = session.Models(None, narrow_gfpgan, classifier)
    build = lambda: stage_builder.build(config, models, sinks=[], stats=Stats(), stop=threading.Event(),  # noqa: E731
                                        tensor_path=True, frame_size=(64, 48))
    assert all(stage.start is None for stage in build())  # a CPU
    monkeypatch.setattr(stage_builder, "warm_ups", lambda m, side, size: {"classify": "c", "enhance": "e"}
                        if (m, side, size) == (models, 512, (64, 48)) else {})
    assert {stage.name: stage.start for stage in build() if stage.start} == {"classify": "c", "enhance": "e"}


def test_compile_flag_wraps_the_network(tmp_path):
    weights = random_weights.save_restoreformer(tmp_path / "RestoreFormer.pth")
    plain = create(EnhanceConfig(name="restoreformer", weights=str(weights)), "cpu")
    compiled = create(EnhanceConfig(name="restoreformer", weights=str(weights), compile=True), "cpu")
    assert not hasattr(plain.model, "_orig_mod")
    assert compiled.model._orig_mod.state_dict().keys() == plain.model.state_dict().keys()
    assert cfg.load(None, ["enhance.compile=true"]).enhance.compile is True


@pytest.mark.slow
def test_compiled_restorer_gives_the_same_faces(tmp_path, crops):
    weights = random_weights.save_restoreformer(tmp_path / "RestoreFormer.pth")
    big = nchw(np.stack([cv2.resize(crops[0], (512, 512), interpolation=cv2.INTER_CUBIC)]))
    plain = create(EnhanceConfig(name="restoreformer", weights=str(weights)), "cpu").enhance_tensor(big)
    compiled = create(EnhanceConfig(name="restoreformer", weights=str(weights), compile=True), "cpu")
    assert (compiled.enhance_tensor(big).int() - plain.int()).abs().max() <= 1


# --- classifier and detector -----------------------------------------------------------------------------------------


def test_classifier_tensor_entry_point_matches_the_array_one(crops, astronaut_face, clip):
    classifier = clip[2].classifier
    for batch in (crops, astronaut_face[None], np.zeros((0, 40, 40, 3), np.uint8)):
        ref = classifier.classify(batch)
        ours = classifier.classify_tensor(nchw(batch))
        assert ours.dtype == np.float32 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert np.argmax(classifier.classify_tensor(nchw(astronaut_face[None]))) == 3  # happy, as on the host path
    with pytest.raises(ValueError, match=r"expected shape \(N, 3, H, W\) uint8 RGB tensor"):
        classifier.classify_tensor(nchw(crops).float())


def test_retinaface_on_frame_tensors_matches_host_frames(astronaut):
    torch.manual_seed(0)
    detector = RetinaFaceDetector(DetectConfig(name="retinaface", score_threshold=0.5, detect_width=240), "cpu",
                                  net=build_retinaface("mobilenet0.25"))
    frames = [cv2.resize(astronaut, (400, 300)), cv2.resize(astronaut[::-1], (400, 300)), astronaut[:200, :200]]
    ref = detector.detect(frames)
    ours = detector.detect_tensors([torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1) for f in frames])
    assert [len(f) for f in ours] == [len(f) for f in ref] and len(ref[0]) > 0
    for a, b in zip(ours, ref):  # the same OpenCV area weights on both sides: the same input pixels
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) uint8 RGB frame tensor"):
        detector.detect_tensors([torch.from_numpy(frames[0])])


# --- records and transfers -------------------------------------------------------------------------------------------


def test_records_carry_and_check_device_twins():
    pixels = torch.zeros((3, 4, 5), dtype=torch.uint8)
    frame = Frame(0, None, device_image=pixels)
    assert frame.size == (5, 4)
    with pytest.raises(ValueError, match=r"device_image: expected shape \(3, 4, 6\) torch.uint8"):
        Frame(0, np.zeros((4, 6, 3), np.uint8), device_image=pixels)
    with pytest.raises(ValueError, match="image: expected"):
        Frame(0, None)
    faces = Faces(np.zeros((2, 4), np.float32), np.ones(2, np.float32),
                  device_processed=torch.arange(2, dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 8, 8))
    assert faces.select(np.array([False, True])).device_processed[:, 0, 0, 0].tolist() == [1]
    with pytest.raises(ValueError, match="device_processed: expected shape"):
        faces.replace(device_processed=torch.zeros((2, 3, 8, 8)))


def test_transfers_on_the_cpu_share_memory_and_return_host_arrays():
    transfers = Transfers("cpu")
    image = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    (uploaded,) = transfers.upload([image])
    assert uploaded.shape == (3, 6, 8) and uploaded.data_ptr() == torch.from_numpy(image).data_ptr()
    back, crops = transfers.download([uploaded.permute(1, 2, 0), uploaded[None].permute(0, 2, 3, 1)]).wait()
    assert isinstance(back, np.ndarray) and np.array_equal(back, image) and crops.shape == (1, 6, 8, 3)


# --- the stage chain: forced tensor path vs host path ---------------------------------------------------------------


def _run_serially(config, models, frames, tensor_path):
    built = stage_builder.build(config, models, sinks=[], stats=Stats(), stop=threading.Event(),
                                tensor_path=tensor_path)
    return run_serially(built, frames)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut_face):
    """(path, decoded frames, models finding the clip's true boxes) of a 4-frame clip with two faces.

    The faces come from the ground truth because OpenCV's multi-threaded Haar cascade may list the same faces in
    another order from run to run, and the tracker's ids follow that order.
    """
    from fersr_stream import synthetic
    from fersr_stream.bench_gpu import TruthDetector

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    boxes = synthetic.write_clip(path, [astronaut_face] * 2, n_frames=4, width=320, height=240, fps=10,
                                 min_size=70, max_size=100)
    with open_source(str(path)) as source:
        frames = list(source)
    models = session.Models(TruthDetector(frames, boxes), BicubicEnhancer(512), classify.load(None, "cpu"))
    return path, frames, models


def test_forced_tensor_path_matches_the_host_path(clip):
    path, frames, models = clip
    config = cfg.load(None, [f"source.uri={path}", "enhance.name=bicubic", "degrade.width=40", "degrade.blur=0.5",
                             "overlay.inset=true", "overlay.paste=true", "align.size=128",
                             "enhance.reuse_every=2", "device=cpu"])
    host = _run_serially(config, models, frames, tensor_path=False)
    tensors = _run_serially(config, models, frames, tensor_path=True)
    assert sum(len(f.faces) for f in host) == 8
    for a, b in zip(host, tensors):
        np.testing.assert_array_equal(b.faces.boxes, a.faces.boxes)
        np.testing.assert_array_equal(b.faces.track_ids, a.faces.track_ids)
        np.testing.assert_array_equal(b.faces.restored, a.faces.restored)
        np.testing.assert_allclose(b.faces.probs, a.faces.probs, atol=0.02)
        np.testing.assert_array_equal(b.faces.probs.argmax(axis=1), a.faces.probs.argmax(axis=1))
        # the overlay materialised the crops it draws, and let go of the device tensors
        assert b.device_image is None and b.faces.device_processed is None
        assert b.faces.processed.shape == a.faces.processed.shape == (len(a.faces), 128, 128, 3)
        # torch's grid sampling (align.crop_torch) vs OpenCV's warp (which quantises its weights to 1/32: ~0.1
        # level apart on average), then the same degradation (JPEG is left out here: it turns a level's difference
        # into several at some pixels, and the near-uniform probabilities of such a blurred face would follow;
        # test_degrade_torch covers it)
        assert np.abs(b.faces.processed.astype(int) - a.faces.processed).mean() < 0.3
        # the drawn frames: pasted faces and insets as close as the crops; labels may differ in the last digit
        assert (np.abs(b.image.astype(int) - a.image) > 8).any(axis=2).mean() < 0.005


def test_tensor_path_without_drawn_crops_copies_none_back(clip):
    path, frames, models = clip
    config = cfg.load(None, [f"source.uri={path}", "enhance.name=none", "device=cpu"])
    out = _run_serially(config, dataclasses.replace(models, enhancer=None), frames, tensor_path=True)
    assert all(f.faces.processed is None and f.faces.probs is not None for f in out)
    assert stage_builder.on_device(models) is False  # the CPU's own rule keeps the host path
    assert stage_builder.source_frames(frames, models) is frames


needs_dali = pytest.mark.skipif(importlib.util.find_spec("nvidia.dali") is None,
                                reason="NVIDIA DALI is not installed (pip install -e '.[dali]')")


@pytest.mark.parametrize("tensor_path", [False, True])
def test_a_frame_without_faces_comes_out_of_classify_the_same_whatever_its_batch(astronaut, tensor_path):
    config = cfg.load(None, ["device=cpu"])
    models = session.load_models(config, torch.device("cpu"))
    built = stage_builder.build(config, models, sinks=[], stats=Stats(), stop=threading.Event(),
                                tensor_path=tensor_path, stills=True)
    names = [stage.name for stage in built]
    before, classify_stage = built[:names.index("classify")], built[names.index("classify")]
    face, blank = run_serially(before, [Frame(0, astronaut), Frame(1, np.zeros_like(astronaut))])
    assert len(face.faces) and not len(blank.faces)
    together = classify_stage.fn([face, blank])
    alone = classify_stage.fn([blank])
    assert together[0].faces.probs.shape == (len(face.faces), 7)
    assert together[1].faces.probs is None and alone[0].faces.probs is None


@needs_dali
def test_decoder_tensors_run_the_stream_without_host_frames(make_clip):
    """DALI (on the CPU here: VP9) hands frames over as tensors: image None until the overlay copies it back."""
    from fersr_stream.sources.dali import DaliSource

    path, _ = make_clip("clip.webm", n_faces=1, n_frames=5, width=240, height=180, fps=10, min_size=80,
                        max_size=100, codec="libvpx-vp9")
    config = cfg.load(None, [f"source.uri={path}", "enhance.name=bicubic", "degrade.width=20", "device=cpu"])
    models = session.load_models(config, torch.device("cpu"))
    with DaliSource(path, device="cpu", sequence=4) as source:
        first = next(tensor_frames(source))
        assert first.image is None and first.device_image.shape == (3, 180, 240)
    results = {}
    for tensor_path in (False, True):
        written = []
        sink = type("Sink", (), {"write": lambda self, f: written.append(f), "close": lambda self: None})()
        stats = Stats()
        built = stage_builder.build(config, models, sinks=[sink], stats=stats, stop=threading.Event(),
                                    tensor_path=tensor_path)
        with DaliSource(path, device="cpu", sequence=4) as source:
            Runner(stage_builder.source_frames(source, models, tensor_path), built, stats=stats).run()
        results[tensor_path] = written
    host, tensors = results[False], results[True]
    assert [f.index for f in tensors] == [f.index for f in host] == list(range(5))
    for a, b in zip(host, tensors):
        assert isinstance(b.image, np.ndarray) and b.image.shape == (180, 240, 3) and b.device_image is None
        np.testing.assert_array_equal(b.faces.boxes, a.faces.boxes)
        if len(a.faces):
            np.testing.assert_allclose(b.faces.probs, a.faces.probs, atol=0.02)
        else:
            assert a.faces.probs is None and b.faces.probs is None
        assert np.abs(b.image.astype(int) - a.image).mean() < 0.2


def test_bench_gpu_rejects_a_bad_face_list():
    """Import-clean, and the CLI checks its lists before building anything (the full run is marked slow)."""
    from click.testing import CliRunner

    from fersr_stream import bench_gpu

    result = CliRunner().invoke(bench_gpu.main, ["--device", "cpu", "--faces", "1,x"])
    assert result.exit_code == 2 and "expected comma-separated integers" in result.output


@pytest.mark.slow
def test_bench_gpu_end_to_end_on_the_cpu():
    from click.testing import CliRunner

    from fersr_stream import bench_gpu

    result = CliRunner().invoke(bench_gpu.main, ["--device", "cpu", "--faces", "1", "--frames", "1", "--size", "144",
                                                 "--sweep", "1", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("device: CPU")
    for needle in ("1 face(s): 1 frames 256x144, 1.0 faces/frame", "ours / loop:", "batch   1:",
                   "fp16 vs fp32: skipped", "detection at width 480", "decode webm"):
        assert needle in result.output
