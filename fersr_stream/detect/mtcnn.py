"""MTCNN (Zhang et al., IEEE SPL 2016) as a detector: faces, scores and 5 landmarks, shipped, batched over frames.

P-Net scans an image pyramid for candidate boxes; R-Net re-scores and regresses each candidate from a 24x24 crop;
O-Net does so again from a 48x48 crop and adds the landmarks (networks and weights: ``mtcnn_nets.py``). The
steps follow facenet-pytorch 2.6.0, whose boxes and landmarks this reproduces (tests/unit/detect/test_mtcnn.py),
with the conventions of the authors' release that the weights were trained with:
- a box ``x1, y1, x2, y2`` has 1-based inclusive corners (MATLAB's): its crop is the 0-based pixels
  ``trunc(x1) - 1`` to ``trunc(x2) - 1``, clipped to the frame; offsets are fractions of ``x2 - x1 + 1``
  (``x2 - x1`` for P-Net's);
- pyramid levels and crops are plain window means (``area.py``);
- P-Net's candidates are merged per level (IoU 0.5), then per frame (0.7); R-Net's per frame (0.7); O-Net's
  by intersection over the smaller box (0.7), which also drops a box inside a better one.
Landmarks come as eye, eye, nose, mouth corner, mouth corner with the image-left one of each pair first (the
subject's right): the order of :class:`Faces` landmarks.

Frames of one size go through P-Net together, one batch per pyramid level, and all their candidates through R-Net
and O-Net together (on a CPU in batches that fit its caches). Host and device paths differ only in how the frame
is shrunk and summed (OpenCV / torch); the cascade is the same torch code on the detector's device.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torchvision

from .. import device as _device
from .. import resize as _resize
from ..config import DetectConfig
from ..types import Faces
from . import area
from .base import check_image, downscale, shrunk_size, to_faces
from .network import NetworkDetector, check_tensor, downscale_tensors
from .mtcnn_nets import MTCNN, load_mtcnn

CELL, STRIDE = 12, 2  # P-Net's window and its step, in pyramid-level pixels
FACTOR = 0.709  # pyramid step: each level ~1/sqrt(2) the area of the one before (the authors' value)
PNET_THRESHOLD, RNET_THRESHOLD = 0.6, 0.7  # the authors' values; O-Net's is config.score_threshold
PNET_LEVEL_IOU, PNET_IOU, RNET_IOU, ONET_OVERLAP = 0.5, 0.7, 0.7, 0.7
GAIN, BIAS = 1 / 128, -127.5 / 128  # pixel means -> the networks' input
# On a CPU, R-Net and O-Net run on this many crops at a time: batches whose activations fit in the caches, rather
# than all candidates at once (``python -m fersr_stream.bench.mtcnn``: a batch of four frames). A GPU takes them
# all at once.
RNET_CPU_BATCH, ONET_CPU_BATCH = 64, 32


# --- boxes ---------------------------------------------------------------------------------------------------------


def pyramid(height: int, width: int, smallest: float) -> list[tuple[float, tuple[int, int]]]:
    """P-Net's levels for an image of ``height`` x ``width``: (scale, (h, w)) from the level where a face
    ``smallest`` pixels wide fills the 12 px window, down to where the image's short side is 12 px."""
    scale = CELL / smallest
    side = min(height, width) * scale
    levels = []
    while side >= CELL:
        # one pixel more than the scale gives, rounded down: the reference's level sizes
        levels.append((scale, (int(height * scale + 1), int(width * scale + 1))))
        scale *= FACTOR
        side *= FACTOR
    return levels


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) boxes -> squares of side max(w, h) about the same centres (the nets read square crops)."""
    size = boxes[:, 2:] - boxes[:, :2]
    side = size.max(dim=1, keepdim=True).values
    corner = boxes[:, :2] + (size - side) / 2
    return torch.cat([corner, corner + side], dim=1)


def _regress(boxes: torch.Tensor, offsets: torch.Tensor, extra: float = 1.0) -> torch.Tensor:
    """Move each side by its offset times the box's width or height (plus ``extra``: 1-based inclusive)."""
    size = (boxes[:, 2:] - boxes[:, :2] + extra).repeat(1, 2)
    return boxes + offsets * size


def _min_overlap_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS on "intersection over the smaller box" (pixel-inclusive areas): drops boxes inside better ones,
    which IoU spares. Indices kept, best first. For O-Net's survivors: a few per frame."""
    order = np.argsort(-scores, kind="stable")
    lo, hi = boxes[:, :2], boxes[:, 2:]
    sizes = np.prod(hi - lo + 1, axis=1)
    keep = []
    while len(order):
        best, rest = order[0], order[1:]
        keep.append(best)
        inter = np.prod(np.maximum(0.0, np.minimum(hi[best], hi[rest]) - np.maximum(lo[best], lo[rest]) + 1), axis=1)
        order = rest[inter / np.maximum(np.minimum(sizes[best], sizes[rest]), 1e-6) <= threshold]
    return np.array(keep, np.int64)


def _crop_corners(boxes: torch.Tensor, limits: torch.Tensor) -> torch.Tensor:
    """(N, 4) 1-based inclusive float boxes -> (N, 4) int64 pixel windows ``x0, y0, x1, y1`` (past-the-end) as the
    reference cuts them: corners truncated, clipped to the frame (a box over the edge is squeezed, not padded),
    at least one pixel. ``limits``: (N, 2) frame width and height."""
    corners = boxes.trunc().long()
    lo = (corners[:, :2].clamp(min=1) - 1).minimum(limits - 1)
    hi = corners[:, 2:].minimum(limits).maximum(lo + 1)
    return torch.cat([lo, hi], dim=1)


# --- detector ------------------------------------------------------------------------------------------------------


class MTCNNDetector(NetworkDetector):
    """MTCNN on frames shrunk to ``config.detect_width``, batched across frames of the same size.

    Args:
        config: ``weights`` (a file in the shipped layout; None = shipped), ``detect_width``, ``min_face``
            (source pixels: the pyramid's smallest face, but never below 12 px of the shrunk frame, as frames are
            not enlarged), ``score_threshold`` (O-Net's, default 0.7; P-Net and R-Net keep the authors' 0.6 and
            0.7).
        device: torch device or name (None = auto). On CUDA frames are uploaded once and stay on the device
            (:meth:`detect_tensors`); on CPU OpenCV shrinks and sums them.
        net: already built networks (tests); default: loaded from ``config.weights``.
    """

    follows = True
    searches_within = True
    default_threshold = 0.7  # O-Net's, the authors' value  # refine: O-Net alone on the faces of the frame before
    # default_weights stays None: the weights ship inside the package, so fetch has nothing to download

    def __init__(self, config: DetectConfig, device: torch.device | str | None = None, net: MTCNN | None = None):
        self.config = config
        self.device = device if isinstance(device, torch.device) else _device.resolve(device or "auto")
        self._on_gpu = _device.uses_tensor_path(self.device)
        net = net if net is not None else load_mtcnn(config.weights)
        # channels-last: the levels and crops come in that layout, and torch's CPU max pooling is several times
        # faster in it
        self.net = net.eval().requires_grad_(False).to(self.device, memory_format=torch.channels_last)

    def refine(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> list[Faces]:
        """O-Net alone on given candidate boxes: for following faces between whole-frame searches of a video.

        Args:
            images: RGB uint8 (H, W, 3) frames (not shrunk: the 48x48 crops are cut from the source pixels).
            boxes: per frame, (K, 4) ``x1, y1, x2, y2`` source pixels where faces are expected (e.g. the boxes
                found in the previous frame, a little enlarged); each is made square about its centre first.

        Returns:
            One Faces per frame, as :meth:`detect` returns them: the regressed boxes scoring above
            ``score_threshold``, overlapping ones merged.
        """
        for image in images:
            check_image(image)
        if self.device.type != "cpu":
            return self.refine_tensors([torch.from_numpy(image).permute(2, 0, 1) for image in images], boxes)

        def cut(frames: list[np.ndarray], squares: torch.Tensor, owner: torch.Tensor):
            # each crop from its window of the frame alone (area.host_crops), in frame pixels
            sizes = torch.tensor([[frame.shape[1], frame.shape[0]] for frame in frames])
            crops = area.host_crops(frames, _crop_corners(squares, sizes[owner]), owner, 48, GAIN, BIAS)
            return crops, squares, torch.zeros((len(squares), 2))

        return self._refine(images, boxes, [image.shape[:2] for image in images], cut)

    def refine_tensors(self, frames: list[torch.Tensor], boxes: list[np.ndarray]) -> list[Faces]:
        """:meth:`refine` for (3, H, W) uint8 RGB tensors on any device; only the regions around the boxes are
        copied to the detector's device."""
        for frame in frames:
            check_tensor(frame)

        def cut(frames: list[torch.Tensor], squares: torch.Tensor, owner: torch.Tensor):
            table, limits, corners = self._patches(frames, squares, owner)
            local = (squares - corners.repeat(1, 2)).to(self.device)  # each box in its own patch
            patch = torch.arange(len(local), device=self.device)
            return self._crops(table, limits, local, patch, 48), local, corners.to(self.device)

        return self._refine(frames, boxes, [tuple(frame.shape[1:]) for frame in frames], cut)

    def _refine(self, frames: list, boxes: list[np.ndarray], shapes: list[tuple[int, int]], cut) -> list[Faces]:
        """:meth:`refine`, given how to cut the crops: ``cut(frames, squares, owner)`` -> O-Net's input for each
        square, the squares in the pixels the crops were cut from, and where those pixels start in the frame."""
        if len(frames) != len(boxes):
            raise ValueError(f"refine: {len(frames)} frames but {len(boxes)} box arrays")
        given = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]
        wanted = [i for i, b in enumerate(given) if len(b)]
        results = [Faces.empty().replace(landmarks=np.zeros((0, 5, 2), np.float32)) for _ in frames]
        if not wanted:
            return results
        squares = _square(torch.from_numpy(np.concatenate([given[i] for i in wanted])))
        owner = torch.cat([torch.full((len(given[i]),), k) for k, i in enumerate(wanted)])
        crops, local, shift = cut([frames[i] for i in wanted], squares, owner)
        each = torch.arange(len(local), device=self.device)
        with torch.inference_mode():
            found, scores, landmarks, kept = self._onet(crops.to(self.device), local, each, self.score_threshold)
        shift = shift[kept]  # crop pixels -> frame pixels
        faces = self._split(found + shift.repeat(1, 2), scores, landmarks + shift[:, None],
                            owner.to(self.device)[kept], [1.0] * len(wanted), [shapes[i] for i in wanted])
        for i, one in zip(wanted, faces):
            results[i] = one
        return results

    def detect_within(self, images: list[np.ndarray], rects: list[np.ndarray]) -> list[Faces]:
        """The whole cascade, but only inside given parts of each frame: for searching where a video changed.

        Args:
            images: RGB uint8 (H, W, 3) frames.
            rects: per frame, (K, 4) ``x0, y0, x1, y1`` source pixels to search.

        Returns:
            One Faces per frame, as :meth:`detect` returns them, from the parts alone: each part is shrunk by the
            scale the whole frame is, so it finds what :meth:`detect` finds there, but faces its edge cuts.
        """
        for image in images:
            check_image(image)

        def part(image: np.ndarray, window: tuple[int, ...], size: tuple[int, int]) -> torch.Tensor:
            x0, y0, x1, y1 = window
            small = cv2.resize(np.ascontiguousarray(image[y0:y1, x0:x1]), size[::-1], interpolation=cv2.INTER_AREA)
            return area.host_integral(small[None]).to(self.device)

        return self._within(images, rects, [image.shape[:2] for image in images], part)

    def detect_within_tensors(self, frames: list[torch.Tensor], rects: list[np.ndarray]) -> list[Faces]:
        """:meth:`detect_within` for (3, H, W) uint8 RGB tensors, the parts shrunk on the detector's device."""
        for frame in frames:
            check_tensor(frame)

        def part(frame: torch.Tensor, window: tuple[int, ...], size: tuple[int, int]) -> torch.Tensor:
            x0, y0, x1, y1 = window
            crop = frame[None, :, y0:y1, x0:x1].to(self.device)
            return area.integral(_resize.to_uint8(_resize.resize(crop, size, "area")).permute(0, 2, 3, 1))

        return self._within(frames, rects, [tuple(frame.shape[1:]) for frame in frames], part)

    def _within(self, frames: list, rects: list[np.ndarray], shapes: list[tuple[int, int]], part) -> list[Faces]:
        """:meth:`detect_within`: one cascade per part, the parts' faces merged per frame as a whole frame's are.
        ``part(frame, window, size)``: the summed-area table of the frame's source ``window`` shrunk to ``size``
        (h, w)."""
        if len(frames) != len(rects):
            raise ValueError(f"detect_within: {len(frames)} frames but {len(rects)} rectangle arrays")
        sizes = [shrunk_size(*shape, self.config.detect_width) for shape in shapes]
        found = []
        for k, (frame, parts, (height, width), (scale, small)) in enumerate(zip(frames, rects, shapes, sizes)):
            # each part in whole pixels of the shrunk frame, and the source pixels those cover
            limit = np.array(small[::-1] * 2)
            for x0, y0, x1, y1 in np.clip(np.asarray(parts, np.float64).reshape(-1, 4) * scale, 0, limit):
                x0, y0, x1, y1 = int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))
                if min(x1 - x0, y1 - y0) < CELL:
                    continue
                window = tuple(min(n, round(v / scale)) for v, n in zip((x0, y0, x1, y1), (width, height) * 2))
                with torch.inference_mode():
                    boxes, scores, landmarks, _ = self._cascade(part(frame, window, (y1 - y0, x1 - x0)), scale)
                shift = torch.tensor([x0, y0], dtype=boxes.dtype, device=boxes.device)
                found.append((boxes + shift.repeat(2), scores, landmarks + shift, torch.full_like(scores, k).long()))
        if not found:
            return [Faces.empty().replace(landmarks=np.zeros((0, 5, 2), np.float32)) for _ in frames]
        return self._split(*(torch.cat(part) for part in zip(*found)), [s for s, _ in sizes], shapes)

    # --- batches ---

    def _detect_batch(self, table: torch.Tensor, scale: float, shape: tuple[int, ...]) -> list[Faces]:
        """The cascade on a batch's summed-area table (B, H + 1, W + 1, 3)."""
        with torch.inference_mode():
            found = self._cascade(table, scale)
        return self._split(*found, [scale] * len(table), [shape] * len(table))

    def _prepare(self, images: list[np.ndarray]) -> tuple[torch.Tensor, float]:
        """Same-size host frames -> the summed-area table of them at detect width (on the device), and the scale."""
        small = [downscale(image, self.config.detect_width) for image in images]
        return area.host_integral(np.stack([s for s, _ in small])).to(self.device), small[0][1]

    def _prepare_tensors(self, frames: torch.Tensor) -> tuple[torch.Tensor, float]:
        """:meth:`_prepare` for a (B, 3, H, W) uint8 batch on the device, shrunk by the same rule there."""
        frames, scale = downscale_tensors(frames, self.config.detect_width)
        return area.integral(frames.permute(0, 2, 3, 1)), scale

    def _patches(self, frames: list[torch.Tensor], squares: torch.Tensor, owner: torch.Tensor):
        """Each box's crop window cut from its frame (summing whole source frames would cost more than O-Net), as
        one zero-padded summed-area table on the device: the table, each window's (width, height) and its corner
        in its frame."""
        sizes = torch.tensor([[frame.shape[2], frame.shape[1]] for frame in frames])
        windows = _crop_corners(squares, sizes[owner])
        extent = windows[:, 2:] - windows[:, :2]
        batch = torch.zeros((len(windows), int(extent[:, 1].max()), int(extent[:, 0].max()), 3), dtype=torch.uint8,
                            device=self.device)
        for row, k, (x0, y0, x1, y1) in zip(batch, owner.tolist(), windows.tolist()):
            row[:y1 - y0, :x1 - x0] = frames[k][:, y0:y1, x0:x1].permute(1, 2, 0)
        table = area.host_integral(batch.numpy()) if self.device.type == "cpu" else area.integral(batch)
        return table, extent.to(self.device), windows[:, :2].float()

    # --- the cascade (device code, shared by both paths) ---

    def _cascade(self, table: torch.Tensor, scale: float):
        """Summed-area table (B, H + 1, W + 1, 3) of frames -> O-Net's boxes, scores, landmarks, frame indices."""
        height, width = table.shape[1] - 1, table.shape[2] - 1
        limits = torch.tensor([[width, height]], device=table.device).expand(table.shape[0], 2)
        boxes, owner = self._propose(table, scale)
        if len(boxes):
            boxes, owner = self._rnet(table, limits, boxes, owner)
        crops = self._crops(table, limits, boxes, owner, 48) if len(boxes) else None
        return self._onet(crops, boxes, owner, self.score_threshold)

    def _propose(self, table: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """P-Net over the pyramid: squared candidate boxes (N, 4) in frame pixels and their frame indices (N,)."""
        smallest = max(self.config.min_face * scale, float(CELL))  # frames are never enlarged to find smaller
        levels = pyramid(table.shape[1] - 1, table.shape[2] - 1, smallest)
        boxes, scores, offsets, owner, level_of = [], [], [], [], []
        for index, (level_scale, size) in enumerate(levels):
            offset_map, probs = self.net.pnet(area.resize(table, size, GAIN, BIAS))
            frame, y, x = torch.nonzero(probs >= PNET_THRESHOLD, as_tuple=True)
            cells = torch.stack([x, y], dim=1).float() * STRIDE
            # the window's 1-based inclusive corners, in frame pixels
            boxes.append(torch.cat([((cells + 1) / level_scale).floor(), ((cells + CELL) / level_scale).floor()], 1))
            scores.append(probs[frame, y, x])
            offsets.append(offset_map[frame, y, x])
            owner.append(frame)
            level_of.append(torch.full_like(frame, index))
        if not boxes:
            return torch.zeros((0, 4), device=table.device), torch.zeros(0, dtype=torch.long, device=table.device)
        boxes, scores, offsets = torch.cat(boxes), torch.cat(scores), torch.cat(offsets)
        owner, level_of = torch.cat(owner), torch.cat(level_of)
        # overlaps within each level of each frame first, then across levels
        keep = torchvision.ops.batched_nms(boxes, scores, owner * len(levels) + level_of, PNET_LEVEL_IOU)
        keep = keep[torchvision.ops.batched_nms(boxes[keep], scores[keep], owner[keep], PNET_IOU)]
        return _square(_regress(boxes[keep], offsets[keep], extra=0.0)), owner[keep]

    def _batched(self, net, crops: torch.Tensor, rows: int) -> tuple[torch.Tensor, ...]:
        """``net(crops)``, ``rows`` crops at a time on a CPU (see :data:`RNET_CPU_BATCH`)."""
        if self.device.type != "cpu" or len(crops) <= rows:
            return net(crops)
        return tuple(torch.cat(parts) for parts in zip(*(net(part) for part in crops.split(rows))))

    def _crops(self, table: torch.Tensor, limits: torch.Tensor, boxes: torch.Tensor, owner: torch.Tensor,
               side: int) -> torch.Tensor:
        """(N, 3, side, side) network input: the boxes cut as the reference cuts them (:func:`_crop_corners`)."""
        return area.crops(table, _crop_corners(boxes, limits[owner]), owner, side, GAIN, BIAS)

    def _rnet(self, table: torch.Tensor, limits: torch.Tensor, boxes: torch.Tensor, owner: torch.Tensor):
        """R-Net on 24x24 crops: the boxes it keeps, regressed and squared, and their frame indices."""
        offsets, scores = self._batched(self.net.rnet, self._crops(table, limits, boxes, owner, 24), RNET_CPU_BATCH)
        keep = torch.nonzero(scores > RNET_THRESHOLD).squeeze(1)
        keep = keep[torchvision.ops.batched_nms(boxes[keep], scores[keep], owner[keep], RNET_IOU)]
        return _square(_regress(boxes[keep], offsets[keep])), owner[keep]

    def _onet(self, crops: torch.Tensor | None, boxes: torch.Tensor, owner: torch.Tensor, threshold: float):
        """O-Net on the boxes' 48x48 crops (:meth:`_crops`; None where there are no boxes): boxes (N, 4), scores
        (N,), landmarks (N, 5, 2) above ``threshold`` and their frame indices (N,), before the final merge of
        overlaps."""
        if not len(boxes):
            return boxes, boxes.new_zeros(0), boxes.new_zeros((0, 5, 2)), owner
        offsets, points, scores = self._batched(self.net.onet, crops, ONET_CPU_BATCH)
        keep = scores > threshold
        boxes, offsets, points, owner = boxes[keep], offsets[keep], points[keep], owner[keep]
        # fractions of the box as the reference measures them: its float corners, not the truncated crop's
        size = boxes[:, None, 2:] - boxes[:, None, :2] + 1
        landmarks = boxes[:, None, :2] - 1 + points.view(-1, 2, 5).transpose(1, 2) * size
        return _regress(boxes, offsets), scores[keep], landmarks, owner

    def _split(self, boxes: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor, owner: torch.Tensor,
               scales: list[float], shapes: list[tuple[int, ...]]) -> list[Faces]:
        """Per frame: merge overlaps (intersection over the smaller box), map to source pixels, validate."""
        boxes, scores = boxes.cpu().numpy(), scores.cpu().numpy()
        landmarks, owner = landmarks.cpu().numpy(), owner.cpu().numpy()
        faces = []
        for k, (scale, shape) in enumerate(zip(scales, shapes)):
            mine = np.flatnonzero(owner == k)
            mine = mine[_min_overlap_nms(boxes[mine], scores[mine], ONET_OVERLAP)]
            faces.append(to_faces(boxes[mine], scores[mine], landmarks[mine], scale, shape, self.config.min_face))
        return faces
