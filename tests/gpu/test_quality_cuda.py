"""The study's quality metrics on CUDA (float32 there, float64 on the CPU) give the CPU's scores.

Skipped without CUDA (see conftest.py); tests/unit/quality runs the same metrics on the CPU.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fersr_stream.quality import METRICS, identity, lpips
from fersr_stream.testing import random_weights


def _faces(n=6, side=96, seed=0):
    rng = np.random.default_rng(seed)
    hr = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in rng.integers(0, 256, (n, side, side, 3), np.uint8)])
    low = np.stack([cv2.resize(cv2.resize(f, (side // 4, side // 4), interpolation=cv2.INTER_AREA), (side, side))
                    for f in hr])
    return hr, low


@pytest.mark.parametrize("name", ["psnr", "ssim"])
def test_pixel_metrics_on_cuda_match_the_cpu(name):
    hr, low = _faces()
    metric = METRICS.get(name)
    np.testing.assert_allclose(metric("cuda")(low, hr), metric("cpu")(low, hr), rtol=1e-4)


def test_lpips_and_identity_on_cuda_match_the_cpu(tmp_path):
    backbone = random_weights.save_alexnet(tmp_path / "alexnet.pth")
    head = random_weights.save_lpips_head(tmp_path / "alex.pth")
    facenet = random_weights.save_inception_resnet_v1(tmp_path / "vggface2.pt")
    hr, low = _faces()
    for make in (lambda device: lpips.LPIPS(device, lpips.LPIPSNet().load_files(backbone, head)),
                 lambda device: identity.Identity(device, identity.InceptionResnetV1().load_file(facenet))):
        gpu, cpu = make("cuda"), make("cpu")
        on_gpu, on_cpu = gpu(low, hr), cpu(low, hr)
        assert on_gpu.shape == (len(hr),)
        # cuDNN convolutions may run in TF32 (torch's default): about 1e-3 relative per product
        np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-2)
