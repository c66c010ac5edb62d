"""What every source is: an iterable of :class:`~fersr_stream.types.Frame` with a :class:`SourceInfo`."""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
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


@dataclass
class Outages:
    """What a live network stream lost so far (all zero for every other source).

    Attributes:
        losses: times the stream was lost (the server closed it, a read failed, or no data came for
            ``source.read_timeout``).
        reconnects: times it was opened again after a loss.
        seconds: seconds without frames: from the last frame before each loss to the first one after it (or to
            when reading ended); the loss going on now is not in it yet (see :meth:`seconds_at`).
        down_since: the clock (monotonic) at the last frame before the loss going on now; None while frames come.
        notes: one line per loss and per reconnect, in order (also logged as they happen).
    """

    losses: int = 0
    reconnects: int = 0
    seconds: float = 0.0
    down_since: float | None = None
    notes: list[str] = field(default_factory=list)

    def lost(self, since: float) -> None:
        """A loss began; the last frame came at ``since``."""
        self.losses += 1
        self.down_since = since

    def back(self, now: float) -> None:
        """The loss going on ended at ``now`` (frames came again, or reading ended)."""
        self.seconds += now - self.down_since
        self.down_since = None

    def seconds_at(self, now: float) -> float:
        """Seconds without frames up to ``now``, the loss going on included (for metrics read mid-loss)."""
        return self.seconds + (now - self.down_since if self.down_since is not None else 0.0)

    def text(self) -> str:
        """``"lost 2 times, reconnected 2 times, 6.4 s without frames"``; empty when nothing was lost."""
        if not self.losses:
            return ""
        return (f"lost {_times(self.losses)}, reconnected {_times(self.reconnects)}, "
                f"{self.seconds:.1f} s without frames")


def _times(n: int) -> str:
    return f"{n} time{'' if n == 1 else 's'}"


class Source(abc.ABC):
    """Frames from somewhere, decoded one at a time (never the whole input in memory).

    Iterate once, from one thread, and call :meth:`close` from that thread after the loop ended
    (closing a decoder while another thread reads from it is unsafe).
    """

    info: SourceInfo

    @property
    def outages(self) -> Outages:
        """Losses and reconnects of a live network stream so far; all zero for other sources."""
        return Outages()

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield frames in presentation order, indices from 0."""

    def frames(self, on_device: bool, stop: threading.Event | None = None) -> Iterator[Frame]:
        """The frames the stream reads: for ``on_device`` (the tensor path) a source that decodes on the device
        hands them over there (``Frame.device_image``, no host copy); by default the frames of :meth:`__iter__`.

        ``stop``: the run's stop event. A source that waits between reads (a stream waiting to reconnect) ends
        when it is set rather than at the end of its wait; a read in progress still ends at its timeout.
        """
        return iter(self)

    @abc.abstractmethod
    def close(self) -> None:
        """Release the input; safe to call more than once."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
