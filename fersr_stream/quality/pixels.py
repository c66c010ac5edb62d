"""PSNR and SSIM on uint8 RGB faces (data range 255).

SSIM follows Wang et al. (2004) as scikit-image computes it with ``gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255, channel_axis=-1``: an 11-tap Gaussian window (sigma 1.5), K1 0.01,
K2 0.03, the SSIM map averaged over the pixels whose window lies inside the image, then over the three channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Metric

PEAK = 255.0


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB over all pixels and channels (inf for identical faces)."""

    name = "psnr"

    def score(self, faces, references):
        mse = ((faces - references) ** 2).flatten(1).mean(1)
        return 10.0 * torch.log10(PEAK ** 2 / mse)


class SSIM(Metric):
    """Structural similarity, mean over the valid pixels and the channels; 1 for identical faces."""

    name = "ssim"
    sigma = 1.5
    radius = int(3.5 * sigma + 0.5)  # scipy.ndimage's truncate=3.5: 11 taps

    def score(self, faces, references):
        if min(faces.shape[-2:]) < 2 * self.radius + 1:
            raise ValueError(f"ssim needs faces of at least {2 * self.radius + 1} px, got {tuple(faces.shape[-2:])}")
        taps = torch.arange(-self.radius, self.radius + 1, dtype=faces.dtype, device=faces.device)
        g = torch.exp(-(taps ** 2) / (2 * self.sigma ** 2))
        g = g / g.sum()
        n, c = faces.shape[:2]

        def blur(x):  # separable Gaussian, 'valid' region only
            x = x.reshape(n * c, 1, *x.shape[-2:])
            x = F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
            return x.reshape(n, c, *x.shape[-2:])

        c1, c2 = (0.01 * PEAK) ** 2, (0.03 * PEAK) ** 2
        mx, my = blur(faces), blur(references)
        vx = blur(faces * faces) - mx * mx
        vy = blur(references * references) - my * my
        cov = blur(faces * references) - mx * my
        ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        return ssim.flatten(1).mean(1)

