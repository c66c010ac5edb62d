"""GFPGAN's modulated convs computed by scaling the input: the same function and parameters as spandrel's."""

from __future__ import annotations

import copy

import pytest
import torch
from spandrel.architectures.GFPGAN.__arch.stylegan2_clean_arch import ModulatedConv2d
from torch import nn

from fersr_stream.testing import random_weights as rc
from fersr_stream.enhance.modconv import BatchedModulatedConv2d, batch_modulated_convs
from fersr_stream.enhance.resample import resample_resblocks


def replaced(conv: nn.Module) -> nn.Module:
    """``conv`` swapped through the public function, as inside a network."""
    holder = nn.ModuleDict({"conv": conv})
    assert batch_modulated_convs(holder) == 1
    return holder["conv"]


def modconv(kernel: int = 3, demodulate: bool = True, sample_mode: str | None = None, dtype=torch.float32):
    """A random 8 -> 6 channel ModulatedConv2d, its replacement, an input and a batch of 3 distinct styles."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(kernel)
        conv = ModulatedConv2d(8, 6, kernel, 16, demodulate=demodulate, sample_mode=sample_mode).to(dtype)
        x = torch.randn(3, 8, 10, 10, dtype=dtype)
        style = torch.randn(3, 16, dtype=dtype)
    return copy.deepcopy(conv), replaced(conv), x, style


@pytest.mark.parametrize("sample_mode", [None, "upsample", "downsample"])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("kernel", [1, 3])
def test_same_function(sample_mode, demodulate, kernel):
    original, new, x, style = modconv(kernel, demodulate, sample_mode, torch.float64)
    assert isinstance(new, BatchedModulatedConv2d)
    expected = original(x, style)
    assert expected.shape[-1] == {None: 10, "upsample": 20, "downsample": 5}[sample_mode]
    # float64: equal up to rounding, far below any difference a wrong demodulation or mixed-up styles would make
    torch.testing.assert_close(new(x, style), expected, rtol=1e-10, atol=1e-12)


def test_same_parameters():
    conv = ModulatedConv2d(8, 6, 3, 16)
    holder = nn.ModuleDict({"conv": conv})
    before = holder.state_dict()
    assert batch_modulated_convs(holder) == 1
    assert holder["conv"].weight is conv.weight and holder["conv"].modulation is conv.modulation
    after = holder.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)


def test_channels_last():
    """The replacement takes channels_last activations (the original's ``view`` cannot) and still matches."""
    original, new, x, style = modconv()
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="view"):
        original(x_nhwc, style)
    torch.testing.assert_close(new(x_nhwc, style), original(x, style), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("demodulate", [True, False])
def test_autocast_dtype(demodulate):
    """Under autocast the output keeps the original's low-precision dtype (no float32 promotion)."""
    original, new, x, style = modconv(demodulate=demodulate)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, actual = original(x, style), new(x, style)
    assert actual.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(actual.float(), expected.float(), rtol=0.05, atol=0.05)


@pytest.fixture(scope="module")
def networks():
    """A narrow random GFPGAN (23 modulated convs), a deep copy with them and its 14 U-Net blocks replaced as on
    CUDA (:mod:`fersr_stream.enhance.resample`), and the replaced modulated convs' count."""
    original = rc.gfpgan_network(narrow=0.125)
    new = copy.deepcopy(original)
    count = batch_modulated_convs(new)
    assert resample_resblocks(new) == 14
    return original, new, count


def test_network_replaced(networks):
    original, new, count = networks
    assert count == sum(isinstance(m, ModulatedConv2d) for m in original.modules()) == 23
    assert not any(isinstance(m, ModulatedConv2d) for m in new.modules())
    assert batch_modulated_convs(new) == 0
    before, after = original.state_dict(), new.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)


def test_network_same_output(networks):
    original, new, _ = networks
    x = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        expected, _ = original(x, return_rgb=False, randomize_noise=False)
        actual, _ = new(x, return_rgb=False, randomize_noise=False)
    assert expected.shape == (2, 3, 512, 512)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)  # float32; max difference here ~5e-6
