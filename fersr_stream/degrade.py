"""Simulated low resolution, shared by the stream (``--simulate-lr``) and the training study.

A crop is made to look as if the face had been ``width`` pixels wide in the camera:
blur (Gaussian, sigma in low-resolution pixels, applied at full resolution before shrinking) -> shrink to
``width`` px wide (area averaging, which is what a sensor integrating light does and never aliases) ->
Gaussian noise (std in 0..255 units) -> JPEG at quality ``jpeg`` -> enlarge back with ``interpolation``.
Every step but the shrink is optional; ``width`` None turns the whole thing off.

:func:`degrade` works on host arrays with OpenCV (the CPU path). For crops that are torch tensors on the GPU, the
stream calls its two halves, :func:`downsample_torch` (kornia blur, an OpenCV-exact area shrink as matrix products,
noise, and the small JPEG step on the host with the same codec) and :func:`enlarge_torch`, since it keeps the
low-resolution face between them; :func:`degrade_torch` chains the two as :func:`degrade`'s whole twin, the
reference the tests hold both paths to. Both round to uint8 after the same steps, so the paths agree within a level
or two (the noise draws differ).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch

from . import resize as _resize
from .config import DegradeConfig
from .errors import ConfigError

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}

# Named recipes (DegradeConfig fields other than width). "resize" is the study's default: resolution loss only.
PRESETS: dict[str, dict] = {
    "resize": {},
    "blur": {"blur": 1.0},
    "jpeg": {"jpeg": 50},
    "blur-noise-jpeg": {"blur": 1.0, "noise": 4.0, "jpeg": 50},
}


def preset(name: str, width: int | None) -> DegradeConfig:
    """The DegradeConfig of the preset ``name`` at ``width`` px.

    Raises:
        ConfigError: an unknown preset (the message lists the known ones) or an invalid width.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown degradation preset {name!r}; known presets: {', '.join(PRESETS)}")
    config = dataclasses.replace(DegradeConfig(), width=width, **PRESETS[name])
    validate(config)
    return config


def validate(config: DegradeConfig) -> None:
    """Raise ConfigError for an interpolation no degradation knows (DegradeConfig checks its numbers itself)."""
    if config.interpolation not in INTERPOLATIONS:
        raise ConfigError(f"degrade.interpolation {config.interpolation!r} is unknown; "
                          f"choose one of: {', '.join(INTERPOLATIONS)}")


def _check_crops(crops: np.ndarray) -> None:
    if not isinstance(crops, np.ndarray) or crops.ndim != 4 or crops.shape[3] != 3 or crops.dtype != np.uint8:
        got = f"{crops.shape} {crops.dtype}" if isinstance(crops, np.ndarray) else type(crops).__name__
        raise ValueError(f"degrade: expected (N, H, W, 3) uint8 RGB crops, got {got}")


def downsample(crops: np.ndarray, width: int, config: DegradeConfig | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """The low-resolution images themselves: blur, shrink, noise and JPEG as ``config`` says.

    Args:
        crops: (N, H, W, 3) uint8 RGB.
        width: output width in pixels (overrides ``config.width``); the height keeps the aspect ratio.
        config: blur, noise, jpeg and interpolation settings (default: none of them).
        rng: noise source; None = a fresh generator seeded with ``config.seed`` (the same noise on every call).

    Returns:
        (N, h, width, 3) uint8 RGB with ``h = round(H * width / W)`` (at least 1).
    """
    config = dataclasses.replace(config or DegradeConfig(), width=width)
    validate(config)
    _check_crops(crops)
    n, h, w = crops.shape[:3]
    out_h = max(1, round(h * width / w))
    if config.noise > 0 and rng is None:
        rng = np.random.default_rng(config.seed)
    # shrinking averages areas; enlarging (a width above the crop's) uses the chosen interpolation
    shrink = cv2.INTER_AREA if width <= w else INTERPOLATIONS[config.interpolation]
    out = np.empty((n, out_h, width, 3), np.uint8)
    for i in range(n):
        image = crops[i]
        if config.blur > 0:
            sigma = config.blur * w / width  # low-res pixels -> crop pixels
            image = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        image = cv2.resize(image, (width, out_h), interpolation=shrink)
        if config.noise > 0:
            noisy = image.astype(np.float32) + rng.normal(0.0, config.noise, image.shape).astype(np.float32)
            image = noisy.round().clip(0, 255).astype(np.uint8)
        if config.jpeg is not None:
            image = _jpeg(image, config.jpeg)
        out[i] = image
    return out


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip an RGB uint8 image through OpenCV's JPEG codec (which expects BGR)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode a {image.shape} image")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def degrade(crops: np.ndarray, config: DegradeConfig, rng: np.random.Generator | None = None) -> np.ndarray:
    """Make crops look as if taken at ``config.width`` px and enlarged back to their own size.

    Args:
        crops: (N, H, W, 3) uint8 RGB.
        config: the degradation; ``width`` None returns ``crops`` itself, untouched.
        rng: noise source; None = a fresh generator seeded with ``config.seed``. A stream keeps one generator and
            passes it on every call, so noise changes from frame to frame but a run repeats exactly.

    Returns:
        (N, H, W, 3) uint8 RGB.
    """
    validate(config)
    if config.width is None:
        return crops
    return enlarge(downsample(crops, config.width, config, rng), crops.shape[1:3], config)


def enlarge(small: np.ndarray, size: tuple[int, int], config: DegradeConfig) -> np.ndarray:
    """(N, h, w, 3) uint8 low-resolution images -> (N, H, W, 3) uint8 with ``config.interpolation``.

    What a viewer (or the classifier) sees of a low-resolution face without restoration; restorers start from
    the small images themselves.
    """
    h, w = size
    up = INTERPOLATIONS[config.interpolation]
    out = np.empty((len(small), h, w, 3), np.uint8)
    for i, image in enumerate(small):
        out[i] = cv2.resize(image, (w, h), interpolation=up)
    return out


def _blur_kernel(sigma: float, limit: int) -> int:
    """OpenCV's Gaussian kernel side for uint8 images (``round(6 sigma + 1) | 1``), kept below twice ``limit``
    (the image side) because reflect padding needs the pad narrower than the image."""
    return min(int(round(sigma * 6 + 1)) | 1, 2 * limit - 1 if limit > 1 else 1)


def degrade_torch(crops: torch.Tensor, config: DegradeConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`degrade` for crops held as torch tensors, without a host round trip: :func:`downsample_torch` then
    :func:`enlarge_torch` (the stream's tensor path calls the two itself, keeping the low-resolution face).

    The steps and the uint8 rounding after each are those of :func:`degrade`; the JPEG step is
    :func:`degrade`'s own, on the host (see :func:`_jpeg_torch`).

    Args:
        crops: (N, 3, H, W) uint8 RGB, or float 0..255 (rounded to uint8 first, as a crop is stored).
        config: the degradation; ``width`` None returns ``crops`` itself, untouched.
        generator: noise source on ``crops``' device; None = a fresh one seeded with ``config.seed``. The torch
            draws are not numpy's, so noisy outputs match :func:`degrade` in distribution only.

    Returns:
        (N, 3, H, W) with the input's dtype (uint8, or float32 holding whole numbers 0..255), on its device.
    """
    validate(config)
    if not isinstance(crops, torch.Tensor) or crops.ndim != 4 or crops.shape[1] != 3:
        got = f"{tuple(crops.shape)} {crops.dtype}" if isinstance(crops, torch.Tensor) else type(crops).__name__
        raise ValueError(f"degrade_torch: expected (N, 3, H, W) RGB crops, got {got}")
    if config.width is None:
        return crops
    if crops.shape[0] == 0:
        return crops
    h, w = crops.shape[2:]
    up = enlarge_torch(downsample_torch(crops, config, generator), (h, w), config)
    return up if crops.dtype == torch.uint8 else up.float()


def downsample_torch(crops: torch.Tensor, config: DegradeConfig,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`downsample` for (N, 3, H, W) tensors: (N, 3, h, config.width) uint8 on the crops' device."""
    _, _, h, w = crops.shape
    width = config.width
    out_h = max(1, round(h * width / w))
    x = _resize.to_uint8(crops.float()).float()
    if config.blur > 0:
        from kornia.filters import gaussian_blur2d

        sigma = config.blur * w / width  # low-res pixels -> crop pixels
        size = (_blur_kernel(sigma, h), _blur_kernel(sigma, w))
        x = _resize.to_uint8(gaussian_blur2d(x, size, (sigma, sigma), border_type="reflect")).float()
    shrink = "area" if width <= w else config.interpolation
    x = _resize.to_uint8(_resize.resize(x, (out_h, width), shrink))
    if config.noise > 0:
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(config.seed)
        noise = torch.randn(x.shape, generator=generator, device=x.device) * config.noise
        x = _resize.to_uint8(x.float() + noise)
    if config.jpeg is not None:
        x = _jpeg_torch(x, config.jpeg)
    return x


def enlarge_torch(small: torch.Tensor, size: tuple[int, int], config: DegradeConfig) -> torch.Tensor:
    """:func:`enlarge` for (N, 3, h, w) uint8 tensors, on their device."""
    return _resize.to_uint8(_resize.resize(small, size, config.interpolation))


def _jpeg_torch(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Round-trip (N, 3, h, w) uint8 RGB through :func:`_jpeg` (OpenCV's libjpeg), back on the images' device.

    The images are the low-resolution ones (a few kB), so the copies cost little; nvJPEG (torchvision's codec on
    CUDA) quantises otherwise: small faces came out several levels apart on average on an H200.
    """
    host = images.permute(0, 2, 3, 1).cpu().numpy()
    done = np.stack([_jpeg(image, quality) for image in host])
    return torch.from_numpy(done).to(images.device).permute(0, 3, 1, 2)
