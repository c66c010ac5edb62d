"""Network streams that reconnect: a lost or stalled stream is opened again, with backoff, for up to
``source.reconnect_for`` seconds, and the run reads on as if nothing had happened but a gap.

A live stream never ends by itself: the server closing it, a read that fails, and ``source.read_timeout`` without
video are all losses. Each loss and each reconnect is a line on stderr (a warning) and is counted in
:attr:`ReconnectingSource.outages`; frame numbers and times go on across a reconnect (see
:mod:`fersr_stream.sources.timeline`). When no reconnect succeeds within ``source.reconnect_for`` (0: none is
tried), reading ends with a one-line :class:`~fersr_stream.errors.SourceError`: the runner then finalizes every
output and the command exits 2. An HTTP(S) address of a whole file is read like a file, and ends like one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from ..config import SourceConfig
from ..errors import SourceError
from ..types import Frame
from .base import Outages, Source
from .pyav import CannotOpen, PyAVSource, StreamLost, open_network, redact

log = logging.getLogger("fersr")

# Seconds between reconnect attempts: the first try comes this long after the loss (a server that restarts at once
# is back), the next ones twice as long each time, up to _MAX_DELAY (a server that is down for long is asked
# every few seconds, not hammered).
_FIRST_DELAY = 0.5
_MAX_DELAY = 8.0
# An attempt with less time than this left before the deadline is not started: it could not finish in time.
_SHORTEST_TRY = 0.2


def open_stream(url: str, config: SourceConfig) -> Source:
    """Open a network stream: a :class:`ReconnectingSource` for a live one, a plain :class:`PyAVSource` for an
    HTTP(S) address of a whole file.

    Raises:
        SourceError: the first connection fails (unreachable, refused, timed out, not a video): no reconnect is
            tried before a single frame came, since a typo in the address is the likelier cause.
    """
    first = open_network(url, config.open_timeout, config.read_timeout)
    if not first.info.live:
        return first
    return ReconnectingSource(url, first, config)


class ReconnectingSource(Source):
    """A live network stream read across losses, one connection (a :class:`PyAVSource`) at a time.

    Args:
        url: the stream's address (with any password: only :func:`redact`'s form is shown).
        first: its first connection, open; it tells :attr:`info`, and later connections must have the same size.
        config: open and read timeouts, and ``reconnect_for``.
        connect: opens a connection, as :func:`open_network` (tests give their own).
        clock: seconds, monotonic (tests give their own).
    """

    def __init__(self, url: str, first: PyAVSource, config: SourceConfig,
                 connect: Callable[..., PyAVSource] = open_network, clock: Callable[[], float] = time.monotonic):
        self.info = first.info
        self._url, self._label, self._config = url, redact(url), config
        self._connect, self._clock = connect, clock
        self._connection: PyAVSource | None = first
        self._timeline = first.timeline
        self._outages = Outages()
        self._last_frame: float | None = None  # the clock when the last frame came

    @property
    def outages(self) -> Outages:
        return self._outages

    def __iter__(self) -> Iterator[Frame]:
        return self._read(None)

    def frames(self, on_device: bool, stop: threading.Event | None = None) -> Iterator[Frame]:
        return self._read(stop)

    def _read(self, stop: threading.Event | None) -> Iterator[Frame]:
        while self._connection is not None:
            try:
                for frame in self._connection:
                    self._last_frame = self._clock()
                    yield frame
                reason = "the server ended the stream"
            except StreamLost as exc:
                reason = exc.reason
            finally:  # also when the reading stops early (the generator is closed)
                self._connection.close()
            self._connection = None
            if stop is not None and stop.is_set():  # the run stopped while a read waited: not a loss to report
                return
            self._connection = self._reconnect(reason, stop)

    def _reconnect(self, reason: str, stop: threading.Event | None) -> PyAVSource | None:
        """A new connection after a loss, tried with backoff until ``reconnect_for`` has passed since the loss;
        None when ``stop`` was set meanwhile.

        Raises:
            SourceError: no connection within ``reconnect_for`` (or it is 0), or one of another frame size.
        """
        lost, outages, limit = self._clock(), self._outages, self._config.reconnect_for
        outages.lost(self._last_frame if self._last_frame is not None else lost)
        after = f"after frame {self._timeline.frames - 1}" if self._timeline.frames else "before its first frame"
        if limit <= 0:
            outages.back(lost)
            raise SourceError(f"lost {self._label} {after}: {reason}; not reconnecting (source.reconnect_for is 0)")
        self._note(f"{self._label}: lost {after}: {reason}; reconnecting for up to {limit:g} s "
                   f"(source.reconnect_for)")
        deadline, delay, tries, why = lost + limit, _FIRST_DELAY, 0, ""
        while True:
            left = deadline - self._clock()
            if left < _SHORTEST_TRY:
                break
            if _wait(stop, min(delay, left)):
                outages.back(self._clock())
                return None
            left = deadline - self._clock()
            if left < _SHORTEST_TRY:
                break
            tries += 1
            timeout = min(self._config.open_timeout, left)  # an attempt may not outlast the deadline
            try:
                connection = self._connect(self._url, timeout, self._config.read_timeout, timeline=self._timeline)
            except CannotOpen as exc:
                cut = exc.timed_out and timeout < self._config.open_timeout
                why, delay = f"no answer in the {timeout:.1f} s left" if cut else exc.reason, min(2 * delay, _MAX_DELAY)
                continue
            except SourceError as exc:  # it opened, but sent no frame
                why, delay = str(exc), min(2 * delay, _MAX_DELAY)
                continue
            if (connection.info.width, connection.info.height) != (self.info.width, self.info.height):
                connection.close()
                outages.back(self._clock())
                raise SourceError(f"{self._label} came back at {connection.info.width}x{connection.info.height}, "
                                  f"not the {self.info.width}x{self.info.height} of the run's outputs; start the "
                                  f"run again")
            outages.reconnects += 1
            down = self._clock() - outages.down_since
            outages.back(self._clock())
            self._note(f"{self._label}: reconnected after {down:.1f} s without frames "
                       f"({tries} tr{'y' if tries == 1 else 'ies'})")
            return connection
        outages.back(self._clock())
        last = f" (the last try: {why})" if why else ""
        raise SourceError(f"lost {self._label} {after}: {reason}; no reconnect within {limit:g} s "
                          f"(source.reconnect_for){last}")

    def _note(self, line: str) -> None:
        self._outages.notes.append(line)
        log.warning("%s", line)

    def close(self) -> None:
        """Close the connection open now, if any; safe to call more than once."""
        if self._connection is not None:
            self._connection.close()


def _wait(stop: threading.Event | None, seconds: float) -> bool:
    """Wait ``seconds``; True when ``stop`` was set (at once or meanwhile)."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)
