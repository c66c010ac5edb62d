"""What every source is: an iterable of :class:`~fersr_stream.types.Frame` with a :class:`SourceInfo`."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

from ..types import Frame


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a source once it is open.

    Attributes:
        width, height: frame size in pixels, upright as shown (of the first image for folders, whose sizes may
            vary).
        fps: nominal frames per second.
        time_base: seconds per pts tick of the frames this source yields.
        frame_count: number of frames when known (files), else None (cameras, network streams).
        live: True for cameras and network streams (frames may be dropped to keep up), False for files.
        path: the input file, so the video sink can copy its audio; None for live sources and images.
        has_audio: whether the input holds an audio stream.
        stills: True for images and folders: each frame is its own picture, unrelated to the one before.
    """

    width: int
    height: int
    fps: float
    time_base: Fraction
    frame_count: int | None
    live: bool
    path: str | None
    has_audio: bool = False
    stills: bool = False


class Source(abc.ABC):
    """Frames from somewhere, decoded one at a time (never the whole input in memory).

    Iterate once, from one thread, and call :meth:`close` from that thread after the loop ended
    (closing a decoder while another thread reads from it is unsafe).
    """

    info: SourceInfo

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield frames in presentation order, indices from 0."""

    def frames(self, on_device: bool) -> Iterator[Frame]:
        """The frames the stream reads: for ``on_device`` (the tensor path) a source that decodes on the device
        hands them over there (``Frame.device_image``, no host copy); by default the frames of :meth:`__iter__`."""
        return iter(self)

    @abc.abstractmethod
    def close(self) -> None:
        """Release the input; safe to call more than once."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
