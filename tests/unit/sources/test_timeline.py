"""LiveTimeline: a live source's frame numbers and times, from 0 and on across reconnects, on a clock of our own."""

from __future__ import annotations

from fractions import Fraction

import pytest

from fersr_stream.sources.timeline import LiveTimeline

MS = Fraction(1, 1000)
TS = Fraction(1, 90000)  # MPEG-TS and RTP


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _seconds(timeline: LiveTimeline, clock: Clock, frames) -> list[tuple[int, float]]:
    """Place ``frames`` (clock time, stream pts, stream time base) and give (frame number, seconds) of each."""
    placed = []
    for now, pts, time_base in frames:
        clock.now = now
        index, out = timeline.place(pts, time_base)
        placed.append((index, float(out * timeline.time_base)))
    return placed


def test_a_stream_that_starts_at_1_4_s_is_timed_from_0_by_its_own_timestamps():
    clock = Clock()
    timeline = LiveTimeline(TS, step=3600, clock=clock)
    # 25 fps, arriving with network jitter: the times are the sender's, not the arrivals'
    frames = [(100 + 0.04 * i + (0.03 if i % 2 else 0), 126000 + 3600 * i, TS) for i in range(5)]
    assert _seconds(timeline, clock, frames) == [(i, pytest.approx(0.04 * i)) for i in range(5)]


def test_a_new_connection_goes_on_after_a_gap_as_long_as_the_outage_in_its_own_time_base():
    clock = Clock()
    timeline = LiveTimeline(TS, step=3600, clock=clock)
    _seconds(timeline, clock, [(100.0, 500, TS), (100.04, 500 + 3600, TS)])
    timeline.new_connection()
    # back 5 s later, its timestamps from 80 ms in milliseconds (an RTMP server restarted)
    later = _seconds(timeline, clock, [(105.04, 80, MS), (105.08, 120, MS), (105.2, 160, MS)])
    assert later == [(2, pytest.approx(5.04)), (3, pytest.approx(5.08)), (4, pytest.approx(5.12))]


def test_frames_without_timestamps_follow_by_a_frame_interval_and_a_segment_starts_at_the_first_timestamp():
    clock = Clock()
    timeline = LiveTimeline(TS, step=3600, clock=clock)
    # RTSP: the first frame of a connection may come without a pts
    placed = _seconds(timeline, clock, [(100.0, None, TS), (100.04, 3600, TS), (100.08, 7200, TS),
                                        (100.12, None, TS), (100.16, 14400, TS)])
    assert placed == [(i, pytest.approx(0.04 * i)) for i in range(5)]


@pytest.mark.parametrize("jump", [-2 * 90000, 60 * 90000])  # back 2 s; ahead of the wall clock by a minute
def test_a_stream_whose_clock_restarts_goes_on_from_the_wall_clock(jump):
    clock = Clock()
    timeline = LiveTimeline(TS, step=3600, clock=clock)
    frames = [(100 + 0.04 * i, 90000 + 3600 * i, TS) for i in range(3)]
    frames += [(100.12 + 0.04 * i, 90000 + jump + 3600 * i, TS) for i in range(3)]
    assert _seconds(timeline, clock, frames) == [(i, pytest.approx(0.04 * i)) for i in range(6)]


def test_small_steps_back_keep_the_times_going_forward():
    clock = Clock()
    timeline = LiveTimeline(TS, step=3600, clock=clock)
    outs = [timeline.place(pts, TS)[1] for pts in (7200, 10800, 10000, 14400)]
    assert outs == [0, 3600, 3601, 7200]
    assert timeline.frames == 4
