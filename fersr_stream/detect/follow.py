"""Detect-and-follow for video: a search every ``every`` frames, and in between only the regions around the
faces found last.

Consecutive frames of a video hold their faces in nearly the same place, so a detector that can search near known
faces (:meth:`Detector.refine`: MTCNN runs its last network, O-Net, on them; Haar searches a region around each)
follows them for a fraction of a whole-frame search, and gives their landmarks every frame. A face that enters the
picture is found at the next search, at most ``every - 1`` frames late; a new shot (the picture changes
at once: a cut, the first frame after a black one) is searched whole at once. A known face that is not found
(by a whole-frame search or near its last place: a missed detection, a turn of the head) is looked for at its last
place for up to ``every`` more frames, so a detector that misses a face now and then does not lose it. Stills
(images, folders) are unrelated to each other and always get the whole-frame search.

With ``changed_only`` (a detector that :attr:`~Detector.searches_within`), a search looks only where the picture
changed since the search before, and around faces lost since: a face that enters, turns or comes out from behind
something changes the pixels where it is, while on a still background the rest of the frame holds nothing new.
Changes near the faces followed (their own moves, a head and shoulders) are left to the following. Every
:data:`WHOLE_EVERY`-th search, and a search whose changes cover most of the frame (a moving camera), is whole. On
footage from a still camera this makes searching several times cheaper; ``python -m fersr_stream.bench.accuracy``
shows what it costs in recall (option ``mtcnn-every4``: the same without it).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..track import iou_matrix
from ..types import Faces
from .base import SAME_FACE, Detector, distinct, join

_FOUND_AGAIN = 0.3  # a face found near a known one overlaps its last box at least this much (IoU)
_THUMBNAIL = (32, 18)  # (width, height) of the gray thumbnails compared to tell a new shot
_NEW_SHOT = 12.0  # their mean absolute difference (0..255) from the frame before, above which the shot is new
# changed_only: the change map's cells are 4 x 4 of every 4th pixel (16 source pixels a side); a cell changed when
# its pixels differ from the last search's by this much on average (0..255: above a compressed video's noise)
_CHANGED = 10.0
_GROW = 2  # cells added around each changed cell: where a face moves, its edges change more than its inside
_MOST = 0.5  # parts covering more of the frame than this: search it whole (a moving camera, a new scene)
WHOLE_EVERY = 8  # changed_only: every this many searches is whole (a face that appeared with too little change)


class FollowingDetector(Detector):
    """Wraps a detector that :attr:`~Detector.follows` (see module docstring); reads the frames its detector reads.

    Frames must come in order, from one video, through one thread.
    """

    follows = False

    def __init__(self, detector: Detector, every: int, changed_only: bool = False):
        self.detector, self.every, self.changed_only = detector, every, changed_only
        self.reads_tensors = detector.reads_tensors
        self._count = 0
        self._searches = 0  # searches since the last whole one, that one included (0: the next is whole)
        self._searched: np.ndarray | None = None  # gray every 4th pixel of the frame last searched (changed_only)
        self._followed = np.zeros((0, 4), np.float32)  # where the faces followed were, a frame before that search
        self._regions = np.zeros((0, 4), np.float32)  # where the faces were last seen, source pixels
        self._misses = np.zeros(0, np.int64)  # frames since each region's face was last found
        self._thumbnail: np.ndarray | None = None  # of the frame before

    def detect(self, images: list[np.ndarray]) -> list[Faces]:
        d = self.detector
        return [self._detect_one(image, d.detect, d.refine, d.detect_within) for image in images]

    def detect_tensors(self, frames: list) -> list[Faces]:
        d = self.detector
        return [self._detect_one(frame, d.detect_tensors, d.refine_tensors, d.detect_within_tensors)
                for frame in frames]

    def warm_up(self, frame_size: tuple[int, int], batches: int) -> None:
        self.detector.warm_up(frame_size, batches)

    def _detect_one(self, frame, search, refine, search_within) -> Faces:
        thumbnail = _thumbnail(frame)
        if self._thumbnail is not None and np.abs(thumbnail - self._thumbnail).mean() > _NEW_SHOT:
            self._count = self._searches = 0  # a new shot: search it whole now, and count from here
        self._thumbnail = thumbnail
        due = self._count % self.every == 0
        self._count += 1
        faces = self._search(frame, search, search_within) if due else None
        # known faces the whole-frame search did not find again are looked for where they were
        lost = np.ones(len(self._regions), bool)
        if faces is not None and len(faces) and len(self._regions):
            lost = iou_matrix(self._regions, faces.boxes).max(axis=1) < SAME_FACE
        regions, misses = self._regions[lost], self._misses[lost]
        hit = np.zeros(len(regions), bool)
        if len(regions):
            near = refine([frame], [regions])[0]
            if len(near):
                hit = iou_matrix(regions, near.boxes).max(axis=1) >= _FOUND_AGAIN
                faces = near if faces is None else distinct(join([faces, near]))
        faces = Faces.empty() if faces is None else faces
        # a region whose face was not found stays where it was, for up to ``every`` frames
        waiting = ~hit & (misses + 1 < self.every)
        missed, missed_count = regions[waiting], misses[waiting] + 1
        if len(missed) and len(faces):
            apart = iou_matrix(missed, faces.boxes).max(axis=1) < SAME_FACE
            missed, missed_count = missed[apart], missed_count[apart]
        self._regions = np.concatenate([faces.boxes, missed])
        self._misses = np.concatenate([np.zeros(len(faces), np.int64), missed_count])
        return faces

    def _search(self, frame, search, search_within) -> Faces:
        """A search when one is due: of the whole frame, or with ``changed_only`` of the parts that changed."""
        if not self.changed_only:
            return search([frame])[0]
        gray, before = _gray(frame), self._searched
        followed = self._regions[self._misses == 0]  # where the faces followed were a frame ago
        known = np.concatenate([followed, self._followed])
        self._searched, self._followed = gray, followed
        parts = None
        if self._searches % WHOLE_EVERY and before is not None and before.shape == gray.shape:
            parts = changed_parts(before, gray, _frame_shape(frame), known, self._regions[self._misses > 0])
        if parts is None:
            self._searches = 1
            return search([frame])[0]
        self._searches += 1
        return search_within([frame], [parts])[0]


def _frame_shape(frame) -> tuple[int, int]:
    """(height, width) of an (H, W, 3) array or a (3, H, W) tensor."""
    return tuple(frame.shape[1:]) if isinstance(frame, torch.Tensor) else frame.shape[:2]


def _gray(frame) -> np.ndarray:
    """Float32 gray of every 4th pixel of an (H, W, 3) uint8 frame or a (3, H, W) uint8 tensor."""
    if isinstance(frame, torch.Tensor):
        weights = torch.tensor([0.299, 0.587, 0.114], device=frame.device)  # OpenCV's RGB -> gray
        return torch.einsum("chw,c->hw", frame[:, ::4, ::4].float(), weights).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(frame[::4, ::4]), cv2.COLOR_RGB2GRAY).astype(np.float32)


def changed_parts(before: np.ndarray, now: np.ndarray, shape: tuple[int, int], known: np.ndarray,
                  lost: np.ndarray) -> np.ndarray | None:
    """The parts of a frame to search: where its gray (every 4th pixel) ``now`` changed from ``before``, except
    around the ``known`` boxes (faces followed: their moves are what changed there), and around the ``lost`` boxes;
    as (K, 4) ``x0, y0, x1, y1`` source pixels. None where they cover most of the frame (:data:`_MOST`), which a
    whole search then covers more cheaply. Boxes are (N, 4) source pixels."""
    height, width = shape
    cells = (max(1, now.shape[1] // 4), max(1, now.shape[0] // 4))
    to_cells = np.float32([cells[0] / width, cells[1] / height] * 2)
    changed = (cv2.resize(np.abs(now - before), cells, interpolation=cv2.INTER_AREA) > _CHANGED).astype(np.uint8)
    for x0, y0, x1, y1 in np.rint(_grown(known, 0.5) * to_cells).astype(int):
        changed[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 0
    changed = cv2.dilate(changed, np.ones((2 * _GROW + 1,) * 2, np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
    corners = stats[1:count, :4].astype(np.float32)  # x, y, w, h in cells
    corners[:, 2:] += corners[:, :2]
    # a lost face is looked for around its last box, half its size again on each side
    parts = np.concatenate([corners / to_cells, _grown(lost, 0.5)])
    parts[:, [0, 2]] = parts[:, [0, 2]].clip(0, width)
    parts[:, [1, 3]] = parts[:, [1, 3]].clip(0, height)
    if np.prod(parts[:, 2:] - parts[:, :2], axis=1).sum() > _MOST * width * height:
        return None
    return parts


def _thumbnail(frame) -> np.ndarray:
    """(18, 32) float32 gray thumbnail of an (H, W, 3) uint8 frame or a (3, H, W) uint8 tensor, from every 8th
    pixel (a thumbnail averages far more than that away)."""
    if isinstance(frame, torch.Tensor):
        small = torch.nn.functional.adaptive_avg_pool2d(frame[:, ::8, ::8].float().mean(0, keepdim=True),
                                                        _THUMBNAIL[::-1])
        return small[0].cpu().numpy()
    sparse = np.ascontiguousarray(frame[::8, ::8])
    return cv2.resize(sparse, _THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32).mean(axis=2)


def _grown(boxes: np.ndarray, share: float) -> np.ndarray:
    """(N, 4) boxes grown on each side by ``share`` of their width and height."""
    size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
    return (boxes + size * np.float32([-share, -share, share, share])).astype(np.float32)


def following(detector: Detector, every: int, stills: bool, changed_only: bool = False) -> Detector:
    """``detector`` made to follow faces between searches, when it can and the frames are a video (``every`` 1:
    each frame searched whole); with ``changed_only``, searching only where the picture changed, when it can (see
    the module docstring)."""
    if every > 1 and not stills and detector.follows:
        return FollowingDetector(detector, every, changed_only and detector.searches_within)
    return detector
