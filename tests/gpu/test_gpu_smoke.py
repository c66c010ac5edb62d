"""GPU smoke tests: DALI decode into CUDA tensors, NVENC encode, and enhance/classify on CUDA against the CPU.

Skipped without CUDA (see conftest.py); the DALI and NVENC tests also skip where DALI is not installed or the GPU
has no NVENC unit (A100 and H100 have none).
"""

from __future__ import annotations

import importlib.util
import logging
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from fersr_stream import classify, enhance
from fersr_stream.crops import HostCrops
from fersr_stream.testing import random_weights as rc
from fersr_stream.config import EnhanceConfig, OutputConfig
from fersr_stream.sinks import open_sink, video
from fersr_stream.sources import SourceInfo, open_source
from fersr_stream.types import Frame

needs_dali = pytest.mark.skipif(importlib.util.find_spec("nvidia.dali") is None,
                                reason="NVIDIA DALI is not installed (pip install -e '.[dali]')")


@needs_dali
def test_dali_decodes_h264_into_cuda_tensors(make_clip):
    from fersr_stream.sources.dali import DaliSource

    path, _ = make_clip("clip.mp4", n_frames=21, width=320, height=240, fps=10)  # H.264 with B-frames
    with open_source(str(path)) as source:
        frames = list(source)
    with DaliSource(path, device="cuda", sequence=8) as source:
        batches = list(source.iter_tensors())
    assert [i for b in batches for i in b.indices] == list(range(len(frames))) == list(range(21))
    assert [p for b in batches for p in b.pts] == [f.pts for f in frames]
    for batch in batches:
        assert batch.images.is_cuda and batch.images.dtype == torch.uint8
        assert batch.images.shape[1:] == (240, 320, 3)
    decoded = torch.cat([b.images for b in batches]).cpu().numpy()
    reference = np.stack([f.image for f in frames])
    assert np.abs(decoded.astype(int) - reference).mean() < 2.5  # NVDEC + DALI's YUV->RGB vs FFmpeg's


def test_nvenc_round_trip(tmp_path, caplog):
    if not video.nvenc_opens(320, 240):
        pytest.skip("h264_nvenc does not open on this GPU (no NVENC unit, or FFmpeg built without it)")
    info = SourceInfo(width=320, height=240, fps=10.0, time_base=Fraction(1, 1000), frame_count=None, live=False,
                      path=None)
    images = [np.full((240, 320, 3), (20 * i, 120, 200), np.uint8) for i in range(10)]
    with caplog.at_level(logging.INFO, logger="fersr"):
        with open_sink(str(tmp_path / "out.mp4"), info, OutputConfig(codec="auto")) as sink:
            for i, image in enumerate(images):
                sink.write(Frame(i, image, pts=100 * i, time_base=info.time_base))
    assert sink.codec == "h264_nvenc" and "encoding with libx264" not in caplog.text
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        decoded = list(container.decode(video=0))
    assert len(decoded) == 10
    assert [float(f.pts * f.time_base) for f in decoded] == pytest.approx([0.1 * i for i in range(10)])
    for ours, ref in zip(decoded, images):
        assert np.abs(ours.to_ndarray(format="rgb24").astype(int) - ref).mean() < 4


@pytest.fixture()
def crops(astronaut, astronaut_face, lfw_faces) -> np.ndarray:
    """(4, 150, 150, 3) uint8 RGB: the astronaut's face, mirrored, and two LFW faces made RGB."""
    import cv2

    lfw = [cv2.resize(np.repeat(f[..., None], 3, axis=2), (150, 150), interpolation=cv2.INTER_CUBIC)
           for f in lfw_faces[:2]]
    return np.stack([astronaut_face, np.ascontiguousarray(astronaut_face[:, ::-1]), *lfw])


def test_classify_on_cuda_matches_the_cpu(crops):
    on_cpu = classify.load(None, "cpu").classify(HostCrops(crops))
    # TF32 convolutions would compare CUDA's reduced precision, not its code path
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        on_cuda = classify.load(None, "cuda").classify(HostCrops(crops))
    assert on_cuda.shape == (4, 7) and on_cuda.dtype == np.float32
    np.testing.assert_allclose(on_cuda, on_cpu, atol=1e-3)


def test_enhance_on_cuda_is_close_to_the_cpu(crops, tmp_path):
    weights = rc.save_restoreformer(tmp_path / "RestoreFormer.pth")  # small random-init network
    config = EnhanceConfig(name="restoreformer", weights=str(weights), batch=4)
    on_cpu = enhance.create(config, "cpu").enhance(HostCrops(crops[:1])).images
    cuda = enhance.create(config, "cuda")
    on_cuda = cuda.enhance(HostCrops(crops[:1])).images
    assert on_cuda.shape == (1, 512, 512, 3) and on_cuda.dtype == np.uint8
    np.testing.assert_array_equal(cuda.enhance(HostCrops(crops[:1])).images, on_cuda)  # deterministic
    # fp16 autocast on CUDA vs fp32 on the CPU: a few levels on average at most
    assert np.abs(on_cuda.astype(int) - on_cpu).mean() < 4
