"""Face crops: FFHQ 5-point alignment (or a square box crop), batched per frame, and feathered paste-back.

Affines map source-frame pixels to crop pixels in OpenCV's convention (integer coordinates are pixel centres),
so ``cv2.warpAffine(frame, A, (S, S))`` cuts the crop and the inverse warp puts it back. Where the crop reaches past
the frame it is filled with a constant mid-grey: GFPGAN's and CodeFormer's inference helpers pad with this grey,
so the restorers have seen it, whereas black or a smeared (replicated) edge gives them a hard structure to "repair".

On CPU the warps are OpenCV calls; on CUDA (``device.uses_tensor_path``) they are torch ops (``crop_torch``).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .types import Faces
from .weights.registry import ALIGNS

# The five FFHQ landmarks in a 512 x 512 aligned face (the template GFPGAN/facexlib align to): the subject's right
# eye, left eye, nose tip, right and left mouth corners, (x, y) in pixels.
FFHQ_TEMPLATE_512 = np.array([
    [192.98, 239.95],
    [318.90, 240.19],
    [256.63, 314.02],
    [201.26, 371.41],
    [313.09, 371.15],
], np.float32)

BORDER_RGB = (132, 133, 135)  # GFPGAN's padding grey (given there as BGR 135, 133, 132)


def template(size: int = 512) -> np.ndarray:
    """(5, 2) float32 FFHQ landmarks for a ``size`` x ``size`` crop (scaled about pixel edges, not centres)."""
    return ((FFHQ_TEMPLATE_512 + 0.5) * (size / 512.0) - 0.5).astype(np.float32)


def estimate_affines(landmarks: np.ndarray, size: int = 512) -> np.ndarray:
    """Least-squares similarity transforms (rotation, uniform scale, shift; no reflection) onto the template.

    Closed-form Umeyama fit, batched over faces.

    Args:
        landmarks: (N, 5, 2) landmark pixels in the frame, in template order.
        size: crop side in pixels.

    Returns:
        (N, 2, 3) float32 frame -> crop affines. Degenerate landmark sets (all points within a pixel) give NaN rows.
    """
    src = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    dst = template(size).astype(np.float64)
    src_mean = src.mean(axis=1, keepdims=True)
    dst_mean = dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = np.einsum("ki,nkj->nij", dst_c, src_c) / src.shape[1]  # (N, 2, 2) dst x src
    u, s, vt = np.linalg.svd(cov)
    # flip the weakest axis when the best orthogonal fit would be a reflection
    d = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    d[d == 0] = 1.0
    signs = np.stack([np.ones_like(d), d], axis=1)  # (N, 2)
    rot = np.einsum("nij,nj,njk->nik", u, signs, vt)
    var = (src_c ** 2).sum(axis=2).mean(axis=1)  # (N,)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(var > 0.25, (s * signs).sum(axis=1) / var, np.nan)
    linear = scale[:, None, None] * rot
    shift = dst_mean - np.einsum("nij,nj->ni", linear, src_mean[:, 0])
    return np.concatenate([linear, shift[:, :, None]], axis=2).astype(np.float32)


def box_affines(boxes: np.ndarray, size: int = 512, margin: float = 0.25) -> np.ndarray:
    """Scale-and-shift transforms cutting a square centred on each box.

    The square's side is ``max(w, h) * (1 + 2 * margin)``: ``margin`` is added on every side as a fraction of the
    box's longer edge, so a face box keeps its centre and aspect in the crop.

    Args:
        boxes: (N, 4) x1, y1, x2, y2 in frame pixels (edges, as detectors report them).
        size: crop side in pixels.
        margin: extra border per side, as a fraction of the box's longer edge.

    Returns:
        (N, 2, 3) float32 frame -> crop affines.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.maximum(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + 2 * margin), 1.0)
    scale = size / side
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # in edge coordinates
    out = np.zeros((len(boxes), 2, 3), np.float64)
    out[:, 0, 0] = out[:, 1, 1] = scale
    # edge coordinate e sits at pixel-centre coordinate e - 0.5 in both images
    out[:, :, 2] = scale[:, None] * (0.5 - centre) + size / 2 - 0.5
    return out.astype(np.float32)


def landmark_affines(faces: Faces, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The FFHQ landmark fit of each face and whether it is usable.

    Returns:
        (N, 2, 3) float32 frame -> crop affines (NaN rows where unusable) and (N,) bool: True where the face has
        landmarks and they are not degenerate.
    """
    if faces.landmarks is None or not len(faces):
        return np.full((len(faces), 2, 3), np.nan, np.float32), np.zeros(len(faces), bool)
    fitted = estimate_affines(faces.landmarks, size)
    return fitted, np.isfinite(fitted).all(axis=(1, 2))


def face_affines(faces: Faces, size: int = 512, margin: float = 0.25, align: str = "landmarks") -> np.ndarray:
    """(N, 2, 3) affines: with ``align="landmarks"`` the landmark fit where landmarks exist and are usable, else
    (and always with ``align="box"``) the box crop with ``margin``."""
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {', '.join(ALIGNS)}, got {align!r}")
    affines = box_affines(faces.boxes, size, margin)
    if align == "landmarks":
        fitted, usable = landmark_affines(faces, size)
        affines[usable] = fitted[usable]
    return affines


def shrink_factor(affines: np.ndarray, limit: int = 16) -> np.ndarray:
    """(N,) int: how many frame pixels per crop pixel (rounded up, 1 where the crop enlarges, at most ``limit``).

    A crop cut at that many times its side and box-averaged down samples every frame pixel once, where a plain
    bilinear cut of a shrinking face skips pixels (aliasing)."""
    linear = np.asarray(affines, np.float64).reshape(-1, 2, 3)[:, :, :2]
    scale = np.sqrt(np.abs(np.linalg.det(linear)))  # crop pixels per frame pixel
    with np.errstate(divide="ignore"):
        k = np.ceil(1.0 / scale - 1e-6)
    return np.clip(np.nan_to_num(k, nan=1.0, posinf=limit), 1, limit).astype(int)


def scaled_affines(affines: np.ndarray, k: int) -> np.ndarray:
    """The same frame -> crop maps into a crop ``k`` times larger (scaled about pixel edges, as crops are)."""
    out = np.asarray(affines, np.float64) * k
    out[..., 2] += 0.5 * k - 0.5
    return out.astype(np.float32)


def crop(image: np.ndarray, affines: np.ndarray, size: int = 512, antialias: bool = False) -> np.ndarray:
    """Cut one crop per affine with OpenCV (bilinear, GFPGAN's grey beyond the frame); frames that are tensors are
    cut by :func:`crop_torch`.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        affines: (N, 2, 3) frame -> crop affines (see :func:`face_affines`).
        size: crop side in pixels.
        antialias: where a crop shrinks the face, cut it at a whole multiple of ``size`` (:func:`shrink_factor`)
            and box-average it down, so that every frame pixel counts (the study's crops; slower).

    Returns:
        (N, size, size, 3) uint8 RGB crops.
    """
    if len(affines) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    factors = shrink_factor(affines) if antialias else np.ones(len(affines), int)
    out = []
    for a, k in zip(np.asarray(affines, np.float32), factors):
        cut = cv2.warpAffine(image, scaled_affines(a, k) if k > 1 else a, (size * k, size * k),
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_RGB)
        out.append(cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA) if k > 1 else cut)
    return np.stack(out)


def crop_torch(images: torch.Tensor, affines: np.ndarray, size: int = 512) -> torch.Tensor:
    """Torch twin of the OpenCV crop, for frames already on the GPU: bilinear, GFPGAN's grey beyond the frame.

    Args:
        images: (3, H, W) one frame shared by all faces, or (N, 3, H, W) one frame per face; any dtype,
            values 0..255.
        affines: (N, 2, 3) frame -> crop affines (OpenCV convention), a host array. The sampling grid's transform
            is worked out from them on the host and sent with a non-blocking copy, so that on CUDA the cut is only
            queued. A blocking copy from the host (``torch.tensor(..., device="cuda")``; kornia's ``warp_affine``
            makes such copies) waits for all the work queued on the stream, in the stream the restorer's last batch.
        size: crop side in pixels.

    Returns:
        (N, 3, size, size) float32 crops in 0..255 (not rounded), on ``images``' device.
    """
    n, (h, w) = len(affines), images.shape[-2:]
    thetas = torch.from_numpy(_sampling_thetas(np.asarray(affines, np.float64).reshape(-1, 2, 3), (w, h), size))
    if images.is_cuda:
        thetas = thetas.pin_memory()
    thetas = thetas.to(images.device, non_blocking=True)
    frames = images.float()
    if frames.ndim == 3:
        frames = frames.unsqueeze(0).expand(n, -1, -1, -1)
    # align_corners=True puts pixel centres at integer coordinates, as OpenCV does
    grid = F.affine_grid(thetas, [n, 3, size, size], align_corners=True)
    warped = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    # how much of each output pixel came from inside the frame (what sampling an all-ones frame would give: the
    # product of each axis' in-frame share); the rest is the border grey, as OpenCV blends it
    x = (grid[..., 0] + 1) * ((w - 1) / 2)  # sample positions in frame pixels, as grid_sample unnormalises them
    y = (grid[..., 1] + 1) * ((h - 1) / 2)
    inside = (_in_frame(x, w) * _in_frame(y, h)).unsqueeze(1)
    return warped + (1.0 - inside) * _border(images.device)


def _in_frame(position: torch.Tensor, length: int) -> torch.Tensor:
    """The weight bilinear sampling at ``position`` (pixels along an axis of ``length``) gives to pixels inside:
    1 from 0 to length - 1, falling linearly to 0 one pixel beyond either end."""
    return torch.minimum(position + 1, length - position).clamp(0, 1)


def _sampling_thetas(affines: np.ndarray, frame_size: tuple[int, int], size: int) -> np.ndarray:
    """(N, 2, 3) float32 ``F.affine_grid`` transforms: crop coordinates -> frame coordinates, both normalised to
    [-1, 1] over pixel centres (``align_corners=True``), from (N, 2, 3) frame -> crop pixel affines."""
    w, h = frame_size
    frame_to_crop = np.concatenate([affines, np.broadcast_to([[[0.0, 0.0, 1.0]]], (len(affines), 1, 3))], axis=1)
    unit = (size - 1) / 2
    crop_from_normal = np.array([[unit, 0.0, unit], [0.0, unit, unit], [0.0, 0.0, 1.0]])
    normal_from_frame = np.array([[2 / max(w - 1, 1), 0.0, -1.0], [0.0, 2 / max(h - 1, 1), -1.0], [0.0, 0.0, 1.0]])
    return (normal_from_frame @ np.linalg.inv(frame_to_crop) @ crop_from_normal)[:, :2].astype(np.float32)


@functools.lru_cache(maxsize=8)
def _border(device: torch.device) -> torch.Tensor:
    """(1, 3, 1, 1) float32 :data:`BORDER_RGB` on ``device``, made once (made anew, it would be a waiting copy)."""
    return torch.tensor(BORDER_RGB, dtype=torch.float32).view(1, 3, 1, 1).to(device)


@functools.lru_cache(maxsize=8)
def _feather_mask(side: int, feather: float) -> np.ndarray:
    """:func:`_paste_weights` of a face inside the frame: the same for every such face, so made once."""
    weights = _paste_weights(side, feather)
    weights.flags.writeable = False
    return weights


def _paste_weights(side: int, feather: float, frame_to_crop: np.ndarray | None = None,
                   frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """(side, side) float32 paste weights in crop pixels: 1 inside, falling to 0 over a soft band at the edges.

    The band is ``feather * side`` wide: the square is eroded by half of it and blurred by a quarter of it, in
    the crop, and warped with the face. (Done in the frame, the erosion's elliptic kernel grew with the face: 81 px
    across for a large face, and slow.) Given the crop's map ``frame_to_crop`` and the frame's
    (width, height), the edges beyond the frame are not faded: the face goes on past it.
    """
    band = feather * side
    if band < 2:
        return np.ones((side, side), np.float32)
    edge = int(round(band / 2))
    canvas = np.zeros((side + 2 * edge, side + 2 * edge), np.float32)  # the crop with a ring around it
    canvas[edge:edge + side, edge:edge + side] = 1
    if frame_to_crop is not None:
        shifted = frame_to_crop.copy()
        shifted[:, 2] += edge
        inside = cv2.warpAffine(np.ones(frame_size[::-1], np.uint8), shifted, canvas.shape[::-1],
                                flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        canvas[inside == 0] = 1
    canvas = cv2.erode(canvas, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8))
    canvas = cv2.GaussianBlur(canvas, (0, 0), band / 4)
    return canvas[edge:edge + side, edge:edge + side].copy()


def paste_back(image: np.ndarray, crops: np.ndarray, affines: np.ndarray, feather: float = 0.1,
               crop_size: int | None = None) -> np.ndarray:
    """Warp each crop back into a copy of the frame, blended through a feathered mask (for display only).

    A face that reaches past the frame's edge is pasted fully up to that edge: only its edges inside the frame
    are faded.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        crops: (N, S, S, 3) uint8 RGB crops (e.g. the host images of ``faces.crops``).
        affines: (N, 2, 3) frame -> crop affines made for crops of side ``crop_size``.
        feather: width of the soft edge as a fraction of the pasted face's side (0 = hard edge).
        crop_size: the crop side the affines were made for, when the crops were resized since (default S).

    Returns:
        (H, W, 3) uint8 RGB frame with the faces pasted in; ``image`` itself is not modified.
    """
    out = image.copy()
    if len(crops) == 0:
        return out
    h, w = image.shape[:2]
    side = crops.shape[1]
    k = side / (crop_size or side)
    corners = np.array([[-0.5, -0.5, 1], [side - 0.5, -0.5, 1], [-0.5, side - 0.5, 1], [side - 0.5, side - 0.5, 1]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for patch, affine in zip(crops, np.asarray(affines, np.float64)):
        fwd = affine * k  # the same map into the resized crop, about pixel edges
        fwd[:, 2] += 0.5 * k - 0.5
        spots = corners @ cv2.invertAffineTransform(fwd).T
        x0, y0 = np.floor(spots.min(axis=0)).astype(int).clip(0, [w, h])
        x1, y1 = (np.ceil(spots.max(axis=0)).astype(int) + 1).clip(0, [w, h])
        if x1 <= x0 or y1 <= y0:
            continue
        if spots.min() < -0.5 or (spots.max(axis=0) > [w - 0.5, h - 0.5]).any():  # the crop leaves the frame
            weights = _paste_weights(side, feather, fwd, (w, h))
        else:
            weights = _feather_mask(side, float(feather))
        # warp only the face's region of the frame: shift the map by the region's corner
        local = fwd.copy()
        local[:, 2] += fwd[:, :2] @ np.array([x0, y0], np.float64)
        region = (x1 - x0, y1 - y0)
        warped = cv2.warpAffine(patch, local, region, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        mask = cv2.warpAffine(weights, local, region, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        roi = out[y0:y1, x0:x1]
        roi[:] = cv2.blendLinear(warped, roi, mask, 1 - mask)
    return out
