"""Enhancers: factory, baselines, restorers loaded from random-init files in the upstream layouts, determinism."""

from __future__ import annotations

import inspect
import shutil

import cv2
import numpy as np
import pytest
import torch

from fersr_stream.testing import random_weights as rc
from fersr_stream import enhance
from fersr_stream.config import EnhanceConfig
from fersr_stream.crops import DeviceCrops, HostCrops
from fersr_stream.enhance.restorers import CodeFormerEnhancer, GFPGANEnhancer, RestoreFormerEnhancer
from fersr_stream.errors import ConfigError, WeightsError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Where this module's checkpoint files go; removed afterwards (they are hundreds of MB)."""
    path = tmp_path_factory.mktemp("restorers")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def gfpgan_file(folder):
    return rc.save_gfpgan(folder / "GFPGANv1.4.pth")


@pytest.fixture(scope="module")
def codeformer_file(folder):
    return rc.save_codeformer(folder / "codeformer.pth")


@pytest.fixture(scope="module")
def restoreformer_file(folder):
    return rc.save_restoreformer(folder / "RestoreFormer.pth")


@pytest.fixture(scope="module")
def faces(astronaut, astronaut_face) -> np.ndarray:
    """(3, 512, 512, 3) uint8: three different face crops."""
    close = cv2.resize(astronaut_face, (512, 512), interpolation=cv2.INTER_CUBIC)
    return np.stack([astronaut, close, np.ascontiguousarray(close[:, ::-1])])


def restore(enhancer, crops: np.ndarray) -> np.ndarray:
    """``enhancer`` on host crops given as an (N, S, S, 3) array: the restored array."""
    return enhancer.enhance(HostCrops(crops)).images


def one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


# --- factory and baselines ---------------------------------------------------------------------------------------


def test_factory_rejects_unknown_names_and_bad_settings():
    with pytest.raises(ConfigError, match="unknown enhancer 'gfpgun'; choose one of: none, bicubic, gfpgan, "
                                          "codeformer, restoreformer"):
        enhance.create(EnhanceConfig(name="gfpgun"), CPU)
    with pytest.raises(ConfigError, match="enhance.batch must be at least 1"):
        enhance.create(EnhanceConfig(name="bicubic", batch=0), CPU)
    with pytest.raises(ConfigError, match="enhance.max_wait must be >= 0 seconds"):
        enhance.create(EnhanceConfig(name="bicubic", max_wait=-0.1), CPU)
    with pytest.raises(ConfigError, match=r"enhance.fidelity must be in \[0, 1\]"):
        enhance.create(EnhanceConfig(name="codeformer", fidelity=1.5), CPU)


def test_none_returns_the_input():
    enhancer = enhance.create(EnhanceConfig(name="none"), "cpu")
    crops = HostCrops(np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    assert enhancer.size is None and enhancer.device == CPU and enhancer.default_weights is None
    assert enhancer.enhance(crops) is crops


def test_bicubic_resizes_to_512(astronaut_face):
    enhancer = enhance.create(EnhanceConfig(name=" Bicubic "), CPU)
    small = cv2.resize(astronaut_face, (96, 96), interpolation=cv2.INTER_AREA)
    out = restore(enhancer, np.stack([small, small[::-1]]))
    assert out.shape == (2, 512, 512, 3) and out.dtype == np.uint8 and enhancer.size == 512
    np.testing.assert_array_equal(out[0], cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC))
    big = np.stack([cv2.resize(astronaut_face, (512, 512))])
    np.testing.assert_array_equal(restore(enhancer, big), big)
    assert restore(enhancer, np.zeros((0, 96, 96, 3), np.uint8)).shape == (0, 512, 512, 3)


def test_the_baselines_treat_device_crops_as_host_crops(astronaut_face):
    crops = np.stack([cv2.resize(astronaut_face, (96, 96), interpolation=cv2.INTER_AREA), astronaut_face[:96, :96]])
    on_device = DeviceCrops(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous())
    for size in (512, 48):  # enlarged bicubic, shrunk by area averaging, with OpenCV's weights on both kinds
        bicubic = enhance.BicubicEnhancer(size)
        out = bicubic.enhance(on_device)
        assert isinstance(out, DeviceCrops) and out.side == size
        assert np.abs(out.host().astype(int) - restore(bicubic, crops)).max() <= 1
    assert enhance.IdentityEnhancer().enhance(on_device) is on_device


def test_every_enhancer_is_registered_once_and_the_networks_name_their_weights():
    assert enhance.ENHANCERS.names() == ("none", "bicubic", "gfpgan", "codeformer", "restoreformer")
    assert enhance.networks() == ("gfpgan", "codeformer", "restoreformer")
    assert [enhance.ENHANCERS.get(n).default_weights for n in enhance.networks()] == \
        ["gfpgan.v1_4", "codeformer.v0_1", "restoreformer.v1"]


# --- loading -------------------------------------------------------------------------------------------------------


def test_gfpgan_loads_the_upstream_layout_with_seeded_noise(gfpgan_file):
    enhancer = enhance.create(EnhanceConfig(name="gfpgan", weights=str(gfpgan_file), seed=3), CPU)
    assert isinstance(enhancer, GFPGANEnhancer) and type(enhancer.model).__name__ == "GFPGANv1Clean"
    assert enhancer.size == 512 and enhancer.device == CPU
    noises = enhancer.model.stylegan_decoder.noises
    stored = torch.load(gfpgan_file, map_location="cpu", weights_only=True)["params_ema"]
    generator = torch.Generator().manual_seed(3)
    for i in range(enhancer.model.stylegan_decoder.num_layers):
        buffer = getattr(noises, f"noise{i}")
        torch.testing.assert_close(buffer, torch.randn(buffer.shape, generator=generator))
        assert not torch.equal(buffer, stored[f"stylegan_decoder.noises.noise{i}"])
    # the learnt weights themselves are the file's
    torch.testing.assert_close(enhancer.model.final_linear.weight, stored["final_linear.weight"])


def test_missing_registry_weights_name_the_download_command(monkeypatch, tmp_path):
    monkeypatch.setenv("FERSR_HOME", str(tmp_path))
    monkeypatch.setenv("FERSR_OFFLINE", "1")
    with pytest.raises(WeightsError, match="fersr-models download codeformer.v0_1") as error:
        enhance.create(EnhanceConfig(name="codeformer"), CPU)
    one_line(error)


class _Opaque:
    """A pickled object that torch.load(weights_only=True) refuses."""


def test_corrupt_files_are_one_line_weights_errors(tmp_path, restoreformer_file):
    garbage = tmp_path / "GFPGANv1.4.pth"
    garbage.write_bytes(b"not a checkpoint" * 100)
    with pytest.raises(WeightsError, match=f"cannot read {garbage} as a GFPGAN checkpoint") as error:
        enhance.create(EnhanceConfig(name="gfpgan", weights=str(garbage)), CPU)
    one_line(error)

    truncated = tmp_path / "RestoreFormer.pth"
    data = restoreformer_file.read_bytes()
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsError, match=f"{truncated} as a RestoreFormer checkpoint") as error:
        enhance.create(EnhanceConfig(name="restoreformer", weights=str(truncated)), CPU)
    one_line(error)

    pickled = tmp_path / "pickled.pth"
    torch.save({"params_ema": {"conv.weight": torch.zeros(1)}, "opt": _Opaque()}, pickled)
    with pytest.raises(WeightsError, match="GFPGAN checkpoint: torch will not read it as plain tensors "
                                           r"\(pickled objects besides tensors, or not a checkpoint\)$") as error:
        enhance.create(EnhanceConfig(name="gfpgan", weights=str(pickled)), CPU)

    not_tensors = tmp_path / "odd.pth"
    torch.save({"params_ema": {"epoch": 3}}, not_tensors)
    with pytest.raises(WeightsError, match=f"{not_tensors} holds no state dict of tensors; expected a CodeFormer"):
        enhance.create(EnhanceConfig(name="codeformer", weights=str(not_tensors)), CPU)


def test_wrong_architecture_is_a_one_line_weights_error(tmp_path, restoreformer_file):
    with pytest.raises(WeightsError, match=f"{restoreformer_file} holds a RestoreFormer network, expected GFPGAN") \
            as error:
        enhance.create(EnhanceConfig(name="gfpgan", weights=str(restoreformer_file)), CPU)
    one_line(error)

    unknown = tmp_path / "conv.pth"
    torch.save({"params": {"module.conv.weight": torch.zeros(3, 3, 1, 1)}}, unknown)
    with pytest.raises(WeightsError, match=f"{unknown} is not a CodeFormer checkpoint") as error:
        enhance.create(EnhanceConfig(name="codeformer", weights=str(unknown)), CPU)
    one_line(error)

    # keys of the right architecture but tensors that do not fit it
    state = rc.restoreformer_network().state_dict()
    state["decoder.conv_out.bias"] = torch.zeros(5)
    broken = tmp_path / "broken.pth"
    torch.save({"params_ema": state}, broken)
    with pytest.raises(WeightsError, match=f"{broken} is not a usable RestoreFormer checkpoint") as error:
        enhance.create(EnhanceConfig(name="restoreformer", weights=str(broken)), CPU)
    one_line(error)


# --- restoring -----------------------------------------------------------------------------------------------------


def test_gfpgan_noise_is_seeded_and_independent_of_the_batch(faces):
    # A narrow GFPGANv1Clean (spandrel loads files only at the released size, ~50x slower) through the same class.
    model = rc.gfpgan_network(narrow=0.0625)
    enhancer = GFPGANEnhancer(model, EnhanceConfig(name="gfpgan", batch=2, seed=0), CPU)
    assert enhancer.batch == 1  # a CPU runs one face per forward (faster there) ...
    enhancer.batch = 2  # ... so the batched forward, as on CUDA, is forced here
    batch = restore(enhancer, faces)  # chunks of 2 and 1
    alone = restore(enhancer, faces[1:2])
    assert batch.shape == (3, 512, 512, 3) and batch.dtype == np.uint8
    assert np.abs(alone[0].astype(int) - batch[1]).max() <= 1
    # ...and not just because every face comes out alike (a random-init decoder barely looks at its input)
    assert np.abs(alone[0].astype(int) - batch[0]).max() > 3 and np.abs(alone[0].astype(int) - batch[2]).max() > 3

    # the noise matters: upstream's fresh draw, or another seed, gives another face
    x = torch.from_numpy(faces[1:2]).permute(0, 3, 1, 2).contiguous().float() / 127.5 - 1
    with torch.inference_mode():
        fresh = model(x, return_rgb=False)[0].clamp(-1, 1).add(1).mul(127.5).round()
    assert (fresh[0].permute(1, 2, 0).numpy() - alone[0]).__abs__().max() > 3
    reseeded = GFPGANEnhancer(rc.gfpgan_network(narrow=0.0625), EnhanceConfig(name="gfpgan", seed=1), CPU)
    assert np.abs(restore(reseeded, faces[1:2]).astype(int) - alone).max() > 3
    assert restore(enhancer, np.zeros((0, 512, 512, 3), np.uint8)).shape == (0, 512, 512, 3)


def test_restoreformer_restores_resized_crops_deterministically(restoreformer_file, faces):
    enhancer = enhance.create(EnhanceConfig(name="restoreformer", weights=str(restoreformer_file)), CPU)
    assert isinstance(enhancer, RestoreFormerEnhancer)
    crops = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in faces[:2]])
    out = restore(enhancer, crops)
    assert out.shape == (2, 512, 512, 3) and out.dtype == np.uint8
    alone = restore(enhancer, crops[1:])
    assert np.abs(alone[0].astype(int) - out[1]).max() <= 1


def test_codeformer_loads_and_calls_with_the_fidelity_keyword(codeformer_file):
    enhancer = enhance.create(EnhanceConfig(name="codeformer", weights=str(codeformer_file), fidelity=0.25), CPU)
    assert isinstance(enhancer, CodeFormerEnhancer) and type(enhancer.model).__name__ == "CodeFormer"
    # spandrel's forward takes upstream's ``w`` as ``weight`` and swallows unknown keywords, so a wrong name would
    # silently run at the default fidelity: check the name against the real signature, then what is passed
    assert "weight" in inspect.signature(enhancer.model.forward).parameters
    calls = []
    enhancer.model = lambda x, **kwargs: calls.append(kwargs) or (x, None)
    restore(enhancer, np.zeros((1, 512, 512, 3), np.uint8))
    assert calls == [{"weight": 0.25}]


@pytest.mark.slow
def test_codeformer_fidelity_changes_the_restoration(codeformer_file, faces):
    outputs = {}
    for fidelity in (0.0, 1.0):
        enhancer = enhance.create(EnhanceConfig(name="codeformer", weights=str(codeformer_file), fidelity=fidelity),
                                  CPU)
        outputs[fidelity] = restore(enhancer, faces[:1])
        assert outputs[fidelity].shape == (1, 512, 512, 3) and outputs[fidelity].dtype == np.uint8
    assert np.abs(outputs[0.0].astype(int) - outputs[1.0]).mean() > 1


@pytest.mark.slow
def test_gfpgan_full_size_restores_the_same_alone_and_in_a_batch(gfpgan_file, faces):
    enhancer = enhance.create(EnhanceConfig(name="gfpgan", weights=str(gfpgan_file), batch=3), CPU)
    enhancer.batch = 3  # the CUDA batching, forced on the CPU
    batch = restore(enhancer, faces)
    alone = restore(enhancer, faces[2:])
    assert batch.shape == (3, 512, 512, 3) and batch.dtype == np.uint8
    assert np.abs(alone[0].astype(int) - batch[2]).max() <= 1


# --- crops on a device, batches padded as on CUDA, warm-ups ------------------------------------------------------


@pytest.fixture(scope="module")
def narrow_gfpgan():
    """A random-init GFPGAN at 1/16 width (the real module and code path, fast on a CPU), batching two faces per
    forward as on CUDA."""
    enhancer = GFPGANEnhancer(rc.gfpgan_network(narrow=0.0625), EnhanceConfig(name="gfpgan", batch=2), CPU)
    enhancer.batch = 2
    return enhancer


def nchw(images: np.ndarray) -> DeviceCrops:
    return DeviceCrops(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))


def test_a_restorer_gives_device_crops_the_pixels_it_gives_host_crops(narrow_gfpgan, faces):
    big = faces[:2]
    on_host = restore(narrow_gfpgan, big)
    on_device = narrow_gfpgan.enhance(nchw(big))
    assert isinstance(on_device, DeviceCrops) and on_device.images.shape == (2, 3, 512, 512)
    np.testing.assert_array_equal(on_device.host(), on_host)  # the same forward, batching and rounding
    assert np.abs(on_host.astype(int) - big).mean() > 5  # a random network does change the faces
    # other crop sides are resized on the device with OpenCV's bicubic weights, so the result barely moves
    small = np.stack([cv2.resize(f, (96, 96), interpolation=cv2.INTER_AREA) for f in faces[1:]])
    resized = narrow_gfpgan.enhance(nchw(small)).host().astype(int)
    assert np.abs(resized - restore(narrow_gfpgan, small)).mean() < 0.5
    assert len(narrow_gfpgan.enhance(nchw(np.zeros((0, 512, 512, 3), np.uint8)))) == 0


def test_padded_batches_give_the_same_faces(monkeypatch, narrow_gfpgan, faces):
    plain = restore(narrow_gfpgan, faces)
    asked = []  # the padding CUDA does, forced on the CPU: every chunk runs as 4 rows
    monkeypatch.setattr(narrow_gfpgan, "rows", lambda n: asked.append(n) or 4)
    # a level at most, as in any other batch (convolutions sum in a batch-dependent order)
    assert np.abs(restore(narrow_gfpgan, faces).astype(int) - plain).max() <= 1
    assert asked == [2, 1]  # chunks of 2 and 1, each padded


def test_a_restorer_pads_to_powers_of_two_on_cuda_only(monkeypatch, narrow_gfpgan):
    assert narrow_gfpgan.rows(1) == 1  # a CPU: no padding
    monkeypatch.setattr(narrow_gfpgan, "device", torch.device("cuda"))
    assert [narrow_gfpgan.rows(n) for n in (1, 2)] == [1, 2]  # powers of two up to its batch of 2


def test_a_restorer_warms_each_padded_shape_once_on_cuda_only(monkeypatch, narrow_gfpgan):
    seen = []
    monkeypatch.setattr(narrow_gfpgan, "enhance", lambda crops: seen.append(tuple(crops.images.shape)))
    narrow_gfpgan.warm_up(512)
    assert seen == []  # a CPU: nothing to warm
    monkeypatch.setattr(narrow_gfpgan, "device", torch.device("cuda"))
    monkeypatch.setattr(torch, "zeros", lambda shape, **kw: torch.empty(shape, dtype=kw["dtype"]))  # no CUDA here
    narrow_gfpgan.warm_up(256)
    assert seen == [(1, 3, 256, 256), (2, 3, 256, 256)]
    enhance.BicubicEnhancer().warm_up(512)  # no network: nothing to do, and nothing fails


def test_compile_flag_wraps_the_network(tmp_path):
    weights = rc.save_restoreformer(tmp_path / "RestoreFormer.pth")
    plain = enhance.create(EnhanceConfig(name="restoreformer", weights=str(weights)), "cpu")
    compiled = enhance.create(EnhanceConfig(name="restoreformer", weights=str(weights), compile=True), "cpu")
    assert not isinstance(plain.model, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(compiled.model, torch._dynamo.eval_frame.OptimizedModule)


@pytest.mark.slow
def test_compiled_restorer_gives_the_same_faces(tmp_path, faces):
    weights = rc.save_restoreformer(tmp_path / "RestoreFormer.pth")
    plain = restore(enhance.create(EnhanceConfig(name="restoreformer", weights=str(weights)), "cpu"), faces[:1])
    compiled = enhance.create(EnhanceConfig(name="restoreformer", weights=str(weights), compile=True), "cpu")
    assert np.abs(restore(compiled, faces[:1]).astype(int) - plain).max() <= 1
