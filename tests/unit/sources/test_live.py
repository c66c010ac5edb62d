"""ReconnectingSource: losses, backoff, giving up and stopping, with connections and a clock of our own (the real
servers are in tests/integration/test_stream_live.py)."""

from __future__ import annotations

import logging
import threading
from fractions import Fraction

import numpy as np
import pytest

from fersr_stream.config import SourceConfig
from fersr_stream.errors import SourceError
from fersr_stream.sources import live
from fersr_stream.sources.base import SourceInfo
from fersr_stream.sources.pyav import CannotOpen, StreamLost
from fersr_stream.sources.timeline import LiveTimeline
from fersr_stream.types import Frame

TB = Fraction(1, 1000)
URL = "rtsp://me:secret@cam.local/live"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Connection:
    """A stream connection that yields ``count`` frames at 10 fps, one per 0.1 s of the clock, then is lost."""

    def __init__(self, clock: Clock, timeline: LiveTimeline, count: int, lost: str | None, size=(32, 24)):
        self.clock, self.timeline, self.count, self.lost = clock, timeline, count, lost
        self.info = SourceInfo(width=size[0], height=size[1], fps=10.0, time_base=TB, frame_count=None, live=True,
                               path=None)
        self.closed = False

    def __iter__(self):
        self.timeline.new_connection()
        for i in range(self.count):
            index, out = self.timeline.place(100 * i, TB)
            yield Frame(index=index, image=np.zeros((24, 32, 3), np.uint8), pts=out, time_base=TB)
            self.clock.now += 0.1
        if self.lost:
            raise StreamLost(live.redact(URL), self.lost)

    def close(self):
        self.closed = True


class Server:
    """What each connect finds: a list of connections to hand out (None: refused), and when each was asked for."""

    def __init__(self, clock: Clock, timeline: LiveTimeline, plan: list):
        self.clock, self.timeline, self.plan = clock, timeline, list(plan)
        self.asked: list[tuple[float, float]] = []  # (clock, open timeout given)
        self.handed: list[Connection] = []

    def connect(self, url, open_timeout, read_timeout, timeline):
        assert url == URL and timeline is self.timeline and read_timeout == 3.0
        self.asked.append((self.clock.now, open_timeout))
        item = self.plan.pop(0) if self.plan else None
        if item is None:
            self.clock.now += 0.01
            raise CannotOpen(live.redact(url), "Connection refused")
        if item == "silent":  # takes the connection, never answers
            self.clock.now += open_timeout
            raise CannotOpen(live.redact(url), f"no answer within {open_timeout:g} s (source.open_timeout)", True)
        count, lost, *size = item
        self.handed.append(Connection(self.clock, self.timeline, count, lost, *size))
        return self.handed[-1]


@pytest.fixture()
def clock(monkeypatch) -> Clock:
    clock = Clock()

    def wait(stop, seconds):  # the backoff's waits pass on our clock, unless the run stopped
        if stop is not None and stop.is_set():
            return True
        clock.now += seconds
        return False

    monkeypatch.setattr(live, "_wait", wait)
    return clock


def _stream(clock: Clock, first: tuple, plan: list, **config) -> tuple[live.ReconnectingSource, Server]:
    timeline = LiveTimeline(TB, step=100, clock=clock)
    server = Server(clock, timeline, plan)
    config = SourceConfig(open_timeout=5.0, read_timeout=3.0, **config)
    source = live.ReconnectingSource(URL, Connection(clock, timeline, *first), config, connect=server.connect,
                                     clock=clock)
    return source, server


def test_a_lost_stream_is_reconnected_with_backoff_and_its_frames_numbered_and_timed_on(clock, caplog):
    # 5 frames, lost; refused three times; 3 frames, ended by the server; refused until the run gives up
    source, server = _stream(clock, (5, "no data for 3 s (source.read_timeout)"),
                             [None, None, None, (3, None)], reconnect_for=20.0)
    frames = []
    with caplog.at_level(logging.WARNING, logger="fersr"), pytest.raises(SourceError) as error:
        for frame in source:
            frames.append(frame)
    assert [f.index for f in frames] == list(range(8))
    # the first connection's frames at 0.1 s apart, the next one's after the outage as the clock measured it
    assert [round(f.time, 2) for f in frames] == [0.0, 0.1, 0.2, 0.3, 0.4, 8.03, 8.13, 8.23]
    # tries 0.5, 1, 2 and 4 s apart after the first loss; after the second, from 0.5 s again up to 8 s apart
    lost = 0.5
    assert [round(t - lost, 2) for t, _ in server.asked[:4]] == [0.5, 1.51, 3.52, 7.53]
    second = server.asked[3][0] + 0.3
    assert [round(t - second, 2) for t, _ in server.asked[4:]] == [0.5, 1.51, 3.52, 7.53, 15.54]
    assert all(c.closed for c in server.handed)
    assert str(error.value) == ("lost rtsp://me:***@cam.local/live after frame 7: the server ended the stream; no "
                                "reconnect within 20 s (source.reconnect_for) (the last try: Connection refused)")
    outages = source.outages
    assert (outages.losses, outages.reconnects) == (2, 1)
    assert outages.seconds == pytest.approx((8.03 - 0.4) + 20.0 + 0.1, abs=0.05)  # both gaps, from the last frame
    assert outages.notes == [
        ("rtsp://me:***@cam.local/live: lost after frame 4: no data for 3 s (source.read_timeout); reconnecting for "
         "up to 20 s (source.reconnect_for)"),
        "rtsp://me:***@cam.local/live: reconnected after 7.6 s without frames (4 tries)",
        ("rtsp://me:***@cam.local/live: lost after frame 7: the server ended the stream; reconnecting for up to 20 s "
         "(source.reconnect_for)")]
    assert [r.getMessage() for r in caplog.records] == outages.notes
    assert outages.text() == "lost 2 times, reconnected 1 time, 27.7 s without frames"


def test_no_attempt_outlasts_reconnect_for(clock):
    source, server = _stream(clock, (2, "reading failed (Input/output error)"), [], reconnect_for=4.0)
    with pytest.raises(SourceError, match=r"no reconnect within 4 s \(source\.reconnect_for\)"):
        list(source)
    # tries at 0.5, 1.5 and 3.5 s after the loss; the last may take only the 0.5 s left, not open_timeout's 5
    assert [(round(t - 0.2, 2), round(timeout, 2)) for t, timeout in server.asked] == \
        [(0.5, 3.5), (1.51, 2.49), (3.52, 0.48)]
    assert clock.now - 0.2 <= 4.0


def test_a_try_cut_short_by_reconnect_for_says_so_rather_than_blaming_open_timeout(clock):
    source, server = _stream(clock, (2, "reading failed"), ["silent", "silent"], reconnect_for=4.0)
    with pytest.raises(SourceError, match=r"\(the last try: no answer in the 3\.5 s left\)$"):
        list(source)
    assert [round(timeout, 2) for _, timeout in server.asked] == [3.5]


def test_reconnect_for_0_ends_at_the_first_loss(clock):
    source, server = _stream(clock, (3, None), [(5, None)], reconnect_for=0)
    with pytest.raises(SourceError) as error:
        list(source)
    assert str(error.value) == ("lost rtsp://me:***@cam.local/live after frame 2: the server ended the stream; not "
                                "reconnecting (source.reconnect_for is 0)")
    assert not server.asked and source.outages.losses == 1


def test_a_stop_ends_the_wait_for_a_reconnect_without_an_error(clock):
    source, server = _stream(clock, (3, "reading failed"), [None] * 10, reconnect_for=60.0)
    stop = threading.Event()
    connect = server.connect

    def refused_then_ctrl_c(*args, **kwargs):
        stop.set()
        return connect(*args, **kwargs)

    source._connect = refused_then_ctrl_c
    assert [f.index for f in source.frames(on_device=False, stop=stop)] == [0, 1, 2]  # then ends, no error
    assert len(server.asked) == 1 and source.outages.losses == 1 and source.outages.reconnects == 0
    assert source.outages.seconds == pytest.approx(0.1 + 0.5 + 0.01)  # from the last frame to the stop


def test_a_read_that_fails_after_the_run_stopped_is_not_reported_as_a_loss(clock):
    source, server = _stream(clock, (3, "no data for 3 s (source.read_timeout)"), [], reconnect_for=60.0)
    stop = threading.Event()
    frames = source.frames(on_device=False, stop=stop)
    assert [f.index for f in (next(frames), next(frames))] == [0, 1]
    stop.set()  # Ctrl-C while the next reads wait, until the stream is lost
    assert [f.index for f in frames] == [2]
    assert source.outages.losses == 0 and not server.asked


def test_a_stream_back_at_another_size_ends_the_run(clock):
    source, _ = _stream(clock, (3, None), [(5, None, (64, 48))], reconnect_for=10.0)
    with pytest.raises(SourceError, match=r"came back at 64x48, not the 32x24 of the run's outputs"):
        list(source)
