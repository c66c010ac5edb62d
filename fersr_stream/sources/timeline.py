"""Frame numbers and times of a live source: from 0 at its first frame, continuous across reconnects.

A camera's timestamps count from when the machine booted, an MPEG-TS stream's from wherever the sender's clock
stood, and every reconnect starts a new stream with timestamps of its own. So a live source's ``time`` is seconds
since the run's first frame: while a connection lasts it follows the stream's own timestamps (the sender's frame
spacing, not the jitter of the network), and the first frame of a new connection comes as long after the last frame
of the old one as the wall clock says, so an outage shows as a gap of its length. Frame numbers go on counting
across a reconnect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction

# A stream whose timestamps jump back by more than _BACK_S, or run ahead of the wall clock (since the connection's
# first frame) by more than _AHEAD_S, has restarted its clock (a camera rebooting behind a relay, a 33-bit
# MPEG-TS wrap): its times go on from the wall clock as after a reconnect. Ahead allows for servers that send
# their first seconds in one burst.
_BACK_S = 1.0
_AHEAD_S = 10.0


class LiveTimeline:
    """Numbers and times the frames of one live source, over one or more connections.

    Args:
        time_base: seconds per tick of the pts handed out (the first connection's time base).
        step: ticks between frames, for frames without a pts.
        clock: seconds, monotonic (tests give their own).
    """

    def __init__(self, time_base: Fraction, step: int, clock: Callable[[], float] = time.monotonic):
        self.time_base, self.step, self._clock = time_base, step, clock
        self._index = 0
        self._last: tuple[int, float] | None = None  # pts out of the previous frame, and the clock then
        self._fresh = True  # the next frame starts a segment: the first, or the first of a new connection
        # a segment's first frame with a pts: (stream pts, its time base, pts out, the clock then)
        self._origin: tuple[int, Fraction, int, float] | None = None

    @property
    def frames(self) -> int:
        """Frames numbered so far."""
        return self._index

    def new_connection(self) -> None:
        """The next frame comes from a new connection: its timestamps start a segment of their own."""
        self._fresh = True

    def place(self, pts: int | None, time_base: Fraction | None) -> tuple[int, int]:
        """(frame number, pts in :attr:`time_base`) of the next frame, whose stream pts is ``pts`` in ``time_base``
        (either may be None: the frame then follows the previous one by a frame interval)."""
        now = self._clock()
        stamped = pts is not None and bool(time_base)
        if self._last is None:
            out = 0
        elif self._fresh or not stamped or self._origin is None:
            out = self._after_gap(now) if self._fresh else self._last[0] + self.step
        else:
            origin_pts, origin_base, origin_out, origin_clock = self._origin
            out = origin_out + round((pts - origin_pts) * origin_base / self.time_base)
            if out < self._last[0] - _BACK_S / self.time_base or \
                    (out - origin_out) * self.time_base > now - origin_clock + _AHEAD_S:
                out = self._after_gap(now)  # the stream's clock restarted
                self._origin = None
            elif out <= self._last[0]:
                out = self._last[0] + 1  # a small step back: pts only go forward
        if stamped and (self._fresh or self._origin is None):
            self._origin = (pts, time_base, out, now)
        elif self._fresh:
            self._origin = None
        self._fresh, self._last = False, (out, now)
        index, self._index = self._index, self._index + 1
        return index, out

    def _after_gap(self, now: float) -> int:
        """The pts of a frame that starts a segment: as long after the previous frame as the wall clock says (at
        least a frame interval)."""
        last, then = self._last
        return last + max(self.step, round((now - then) / self.time_base))
