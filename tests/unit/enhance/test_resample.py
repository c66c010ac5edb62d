"""GFPGAN's bilinear x2 / x1/2 without F.interpolate on small maps: the same values, dtype and memory format."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from spandrel.architectures.GFPGAN.__arch.gfpganv1_clean_arch import ResBlock

from fersr_stream.enhance import resample
from fersr_stream.enhance.resample import ResampledResBlock, bilinear, resample_resblocks


def interpolate(x, scale):
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 7, 4), (3, 2, 1, 6), (1, 1, 2, 2)])
def test_doubling_is_bilinear_interpolation(shape):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(sum(shape)))
    torch.testing.assert_close(bilinear(x, 2), interpolate(x, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 6, 4), (3, 2, 2, 10)])
def test_halving_is_bilinear_interpolation(shape):
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(sum(shape)))
    torch.testing.assert_close(bilinear(x, 0.5), interpolate(x, 0.5), rtol=0, atol=1e-12)


def test_large_or_odd_maps_go_to_interpolate(monkeypatch):
    calls = []
    monkeypatch.setattr(resample.F, "interpolate", lambda x, **kw: calls.append((x.shape[-2:], kw["scale_factor"])))
    small, large = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 65)  # 4096 pixels: the last doubled here
    bilinear(small, 2), bilinear(large, 2), bilinear(torch.zeros(1, 1, 256, 256), 0.5)
    bilinear(torch.zeros(1, 1, 5, 4), 0.5), bilinear(torch.zeros(1, 1, 256, 258), 0.5)  # odd side; too large
    assert calls == [((64, 65), 2), ((5, 4), 0.5), ((256, 258), 0.5)]


@pytest.mark.parametrize("scale", [2, 0.5])
def test_dtype_and_memory_format_are_kept(scale):
    x = torch.randn(2, 4, 6, 6).to(torch.float16).contiguous(memory_format=torch.channels_last)
    out = bilinear(x, scale)
    assert out.dtype == torch.float16 and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), interpolate(x.float(), scale), rtol=0, atol=2e-3)  # float16 rounding


@pytest.mark.parametrize("mode", ["up", "down"])
def test_resblock_is_the_same_function_on_the_same_modules(mode):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = ResBlock(4, 6, mode).double()
        x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    new = ResampledResBlock(copy.deepcopy(block))
    assert new.state_dict().keys() == block.state_dict().keys()
    with torch.inference_mode():
        torch.testing.assert_close(new(x), block(x), rtol=0, atol=1e-12)
    holder = torch.nn.ModuleDict({"a": block, "b": torch.nn.Sequential(copy.deepcopy(block))})
    assert resample_resblocks(holder) == 2 and resample_resblocks(holder) == 0
    assert isinstance(holder["a"], ResampledResBlock) and holder["a"].conv1 is block.conv1
