"""Enhancers: factory, baselines, restorers loaded from random-init files in the upstream layouts, determinism."""

from __future__ import annotations

import inspect
import shutil

import cv2
import numpy as np
import pytest
import torch

from fersr_stream.enhance import random_weights as rc
from fersr_stream import enhance
from fersr_stream.config import EnhanceConfig
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
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert enhancer.name == "none" and enhancer.size is None and enhancer.device == CPU
    assert enhancer.enhance(crops) is crops
    assert enhancer.enhance(np.zeros((0, 64, 64, 3), np.uint8)).shape == (0, 64, 64, 3)


def test_bicubic_resizes_to_512(astronaut_face):
    enhancer = enhance.create(EnhanceConfig(name=" Bicubic "), CPU)
    small = cv2.resize(astronaut_face, (96, 96), interpolation=cv2.INTER_AREA)
    out = enhancer.enhance(np.stack([small, small[::-1]]))
    assert out.shape == (2, 512, 512, 3) and out.dtype == np.uint8 and enhancer.size == 512
    np.testing.assert_array_equal(out[0], cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC))
    big = np.stack([cv2.resize(astronaut_face, (512, 512))])
    np.testing.assert_array_equal(enhancer.enhance(big), big)
    assert enhancer.enhance(np.zeros((0, 96, 96, 3), np.uint8)).shape == (0, 512, 512, 3)


@pytest.mark.parametrize("bad", [np.zeros((2, 64, 48, 3), np.uint8), np.zeros((64, 64, 3), np.uint8),
                                 np.zeros((1, 64, 64, 3), np.float32)])
def test_crops_must_be_square_uint8_batches(bad):
    with pytest.raises(ValueError, match=r"expected \(N, S, S, 3\) uint8 RGB crops"):
        enhance.create(EnhanceConfig(name="bicubic"), CPU).enhance(bad)


# --- loading -------------------------------------------------------------------------------------------------------


def test_gfpgan_loads_the_upstream_layout_with_seeded_noise(gfpgan_file):
    enhancer = enhance.create(EnhanceConfig(name="gfpgan", weights=str(gfpgan_file), seed=3), CPU)
    assert isinstance(enhancer, GFPGANEnhancer) and type(enhancer.model).__name__ == "GFPGANv1Clean"
    assert enhancer.name == "gfpgan" and enhancer.size == 512 and enhancer.device == CPU
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
    batch = enhancer.enhance(faces)  # chunks of 2 and 1
    alone = enhancer.enhance(faces[1:2])
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
    assert np.abs(reseeded.enhance(faces[1:2]).astype(int) - alone).max() > 3
    assert enhancer.enhance(np.zeros((0, 512, 512, 3), np.uint8)).shape == (0, 512, 512, 3)


def test_restoreformer_restores_resized_crops_deterministically(restoreformer_file, faces):
    enhancer = enhance.create(EnhanceConfig(name="restoreformer", weights=str(restoreformer_file)), CPU)
    assert isinstance(enhancer, RestoreFormerEnhancer)
    crops = np.stack([cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA) for f in faces[:2]])
    out = enhancer.enhance(crops)
    assert out.shape == (2, 512, 512, 3) and out.dtype == np.uint8
    alone = enhancer.enhance(crops[1:])
    assert np.abs(alone[0].astype(int) - out[1]).max() <= 1


def test_codeformer_loads_and_calls_with_the_fidelity_keyword(codeformer_file):
    enhancer = enhance.create(EnhanceConfig(name="codeformer", weights=str(codeformer_file), fidelity=0.25), CPU)
    assert isinstance(enhancer, CodeFormerEnhancer) and type(enhancer.model).__name__ == "CodeFormer"
    # spandrel's forward takes upstream's ``w`` as ``weight`` and swallows unknown keywords, so a wrong name would
    # silently run at the default fidelity: check the name against the real signature, then what is passed
    assert "weight" in inspect.signature(enhancer.model.forward).parameters
    calls = []
    enhancer.model = lambda x, **kwargs: calls.append(kwargs) or (x, None)
    enhancer.enhance(np.zeros((1, 512, 512, 3), np.uint8))
    assert calls == [{"weight": 0.25}]


@pytest.mark.slow
def test_codeformer_fidelity_changes_the_restoration(codeformer_file, faces):
    outputs = {}
    for fidelity in (0.0, 1.0):
        enhancer = enhance.create(EnhanceConfig(name="codeformer", weights=str(codeformer_file), fidelity=fidelity),
                                  CPU)
        outputs[fidelity] = enhancer.enhance(faces[:1])
        assert outputs[fidelity].shape == (1, 512, 512, 3) and outputs[fidelity].dtype == np.uint8
    assert np.abs(outputs[0.0].astype(int) - outputs[1.0]).mean() > 1


@pytest.mark.slow
def test_gfpgan_full_size_restores_the_same_alone_and_in_a_batch(gfpgan_file, faces):
    enhancer = enhance.create(EnhanceConfig(name="gfpgan", weights=str(gfpgan_file), batch=3), CPU)
    enhancer.batch = 3  # the CUDA batching, forced on the CPU
    batch = enhancer.enhance(faces)
    alone = enhancer.enhance(faces[2:])
    assert batch.shape == (3, 512, 512, 3) and batch.dtype == np.uint8
    assert np.abs(alone[0].astype(int) - batch[2]).max() <= 1
