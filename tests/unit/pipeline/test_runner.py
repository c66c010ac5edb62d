import sys
import threading
import time

import numpy as np
import pytest

from fersr_stream.pipeline.runner import NICE_STEP, Input, Policy, Runner
from fersr_stream.pipeline.stages import Stage
from fersr_stream.errors import SourceError
from fersr_stream.pipeline.stats import Stats
from fersr_stream.types import Frame


class Step(Stage):
    """A stage made of functions, as the runner sees it."""

    def __init__(self, name, fn, batch=1, max_wait=0.0, start=None, close=None):
        self.name, self.fn, self.batch, self.max_wait = name, fn, batch, max_wait
        self._start, self._close = start, close

    def start(self):
        if self._start is not None:
            self._start()

    def process(self, frames):
        return self.fn(frames)

    def close(self):
        if self._close is not None:
            self._close()


def frames(n, delay=0.0):
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield Frame(i, np.zeros((4, 4, 3), np.uint8), pts=i)


class Collect:
    def __init__(self):
        self.indices, self.frames, self.closed = [], [], 0

    def fn(self, batch):
        self.indices += [f.index for f in batch]
        self.frames += batch
        return batch

    def close(self):
        self.closed += 1


def slow(seconds):
    def fn(batch):
        time.sleep(seconds)
        return batch
    return fn


def test_file_policy_loses_no_frame_behind_a_slow_stage():
    sink = Collect()
    runner = Runner([Input(frames(40), Policy.WAIT)],
                    [Step("slow", slow(0.005)), Step("write", sink.fn, close=sink.close)], queue_size=2)
    stats = runner.run()
    assert sink.indices == list(range(40))
    assert stats.frames_in == stats.frames_out == 40 and stats.dropped == 0 and sink.closed == 1


def test_fill_latency_is_the_time_to_the_first_frame_out():
    sink = Collect()
    stats = Runner([Input(frames(5))], [Step("slow", slow(0.05)), Step("write", sink.fn)]).run()
    assert 0.05 <= stats.fill < stats.wall  # the first frame waited for the slow stage once, the run for all five
    assert "first frame out after" in stats.table()
    assert Runner([Input(iter([]))], [Step("write", sink.fn)]).run().fill is None


def test_the_stats_table_shows_each_stages_mean_batch():
    stats = Stats()
    for items in (4, 2, 3):
        stats.record("classify", items, 0.009, 0.006)
    stats.record("write", 1, 0.002, 0.002)
    rows = {line.split()[0]: line.split()[1:] for line in stats.table().splitlines()[1:3]}
    assert rows["classify"][:4] == ["9", "3.0", "3.00", "2.00"]  # frames, batch, ms/frame, cpu ms
    assert rows["write"][:2] == ["1", "1.0"]


def test_start_hooks_run_on_their_stage_threads_before_the_first_frame_is_read():
    events, threads = [], {}

    def source():
        events.append("first read")
        yield from frames(3)

    def hook(name, seconds):
        def start():
            time.sleep(seconds)
            events.append(f"{name} started")
            threads[f"{name} start"] = threading.get_ident()
        return start

    def work(name):
        def fn(batch):
            threads[f"{name} fn"] = threading.get_ident()
            return batch
        return fn

    sink = Collect()
    stats = Runner([Input(source())], [Step("a", work("a"), start=hook("a", 0.1)), Step("b", work("b")),
                              Step("write", sink.fn, start=hook("write", 0.0))]).run()
    assert events[-1] == "first read" and sorted(events[:-1]) == ["a started", "write started"]
    assert threads["a start"] == threads["a fn"] and threads["a start"] != threads["b fn"]
    assert threads["write start"] != threads["a start"]
    assert stats.warm_up >= 0.1 and sink.indices == [0, 1, 2]  # the frames are counted from the first read on
    assert "warmed up for" in stats.table()
    assert not Runner([Input(frames(2))], [Step("write", Collect().fn)]).run().warmed_up  # nothing to warm: no wait


def test_a_failing_start_hook_stops_the_run_without_reading_and_closes_the_sink():
    read, sink = [], Collect()

    def source():
        read.append(True)
        yield from frames(3)

    def broken():
        raise RuntimeError("no plans")

    with pytest.raises(RuntimeError, match="no plans"):
        Runner([Input(source())], [Step("a", slow(0), start=broken), Step("write", sink.fn, close=sink.close)]).run()
    assert read == [] and sink.indices == [] and sink.closed == 1


def test_live_policy_drops_oldest_and_counts():
    sink = Collect()
    runner = Runner([Input(frames(60), Policy.DROP_OLDEST)],
                    [Step("slow", slow(0.01)), Step("write", sink.fn, close=sink.close)], queue_size=2)
    stats = runner.run()
    assert stats.dropped > 0
    assert len(sink.indices) + stats.dropped == 60
    assert sink.indices == sorted(sink.indices) and sink.indices[-1] == 59  # newest kept, order kept


def test_raising_stage_is_reraised_without_hang_and_sink_closed():
    sink = Collect()

    def boom(batch):
        if batch[0].index == 5:
            raise RuntimeError("stage failed")
        return batch

    runner = Runner([Input(frames(10_000))], [Step("boom", boom), Step("write", sink.fn, close=sink.close)],
                    queue_size=2)
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="stage failed"):
        runner.run()
    assert time.perf_counter() - t0 < 5
    assert sink.closed == 1 and sink.indices == list(range(5))


def test_raising_source_is_reraised():
    def bad():
        yield from frames(3)
        raise OSError("decoder died")

    sink = Collect()
    with pytest.raises(OSError, match="decoder died"):
        Runner([Input(bad())], [Step("write", sink.fn, close=sink.close)]).run()
    assert sink.closed == 1


def test_stop_event_ends_an_endless_source_and_finalizes():
    sink = Collect()

    def endless():
        i = 0
        while True:
            yield Frame(i, np.zeros((2, 2, 3), np.uint8))
            i += 1
            time.sleep(0.001)

    runner = Runner([Input(endless())], [Step("write", sink.fn, close=sink.close)])
    threading.Timer(0.2, runner.stop).start()
    runner.run()
    assert sink.closed == 1 and len(sink.indices) > 0


def test_batches_fill_up_to_max_and_keep_order():
    sizes = []

    def batched(batch):
        sizes.append(len(batch))
        return batch

    sink = Collect()
    Runner([Input(frames(50))], [Step("b", batched, batch=8, max_wait=0.05), Step("write", sink.fn)],
           queue_size=16).run()
    assert sink.indices == list(range(50))
    assert max(sizes) > 1 and max(sizes) <= 8


@pytest.mark.parametrize("sink_seconds", [0.0, 0.03])
def test_a_batch_waits_only_while_later_stages_are_busy(sink_seconds):
    # frames trickle in every 10 ms and the batcher may wait a whole second: behind an idle sink each frame goes
    # on at once; behind a sink with frames queued (30 ms each) the batches fill while it works
    sizes = []

    def batched(batch):
        sizes.append(len(batch))
        return batch

    sink = Collect()
    write = slow(sink_seconds) if sink_seconds else sink.fn
    Runner([Input(frames(30, delay=0.01))], [Step("b", batched, batch=8, max_wait=1.0), Step("write", write)]).run()
    assert sum(sizes) == 30
    if sink_seconds:
        assert max(sizes) > 2
    else:
        assert sizes.count(1) >= 0.8 * len(sizes), sizes


def test_max_frames():
    sink = Collect()
    stats = Runner([Input(frames(100), max_frames=7)], [Step("write", sink.fn)]).run()
    assert sink.indices == list(range(7)) and stats.frames_in == 7


def _nice() -> int:
    import os
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice levels are Linux's")
@pytest.mark.parametrize("policy, reader_below", [(Policy.WAIT, 3), (Policy.DROP_OLDEST, 0)])
def test_downstream_stages_run_at_higher_priority(policy, reader_below):
    base = _nice()
    seen = {}

    def source():
        seen["read"] = _nice()
        yield from frames(3)

    def record(name):
        def fn(batch):
            seen[name] = _nice()
            return batch
        return fn

    Runner([Input(source(), policy)], [Step(n, record(n)) for n in ("detect", "classify", "write")]).run()
    expected = {"read": reader_below, "detect": 2, "classify": 1, "write": 0}
    assert seen == {name: min(19, base + NICE_STEP * below) for name, below in expected.items()}
    assert _nice() == base  # the caller's own thread is left as it was


def numbered(source: int, n: int, delay: float = 0.0):
    """Frames 0..n-1 of a source (the runner stamps its number on them)."""
    for i in range(n):
        if delay:
            time.sleep(delay)
        yield Frame(i, np.full((4, 4, 3), source, np.uint8))


def test_several_sources_share_the_stages_and_each_keeps_its_frames_in_order():
    sink, seen = Collect(), []

    def record(batch):  # slow: the sources' frames queue up meanwhile, so a batch takes what all of them queued
        seen.append({f.source for f in batch})
        time.sleep(0.005)
        return batch

    stats = Runner([Input(numbered(0, 30)), Input(numbered(1, 20)), Input(numbered(2, 25))],
                   [Step("b", record, batch=8), Step("write", sink.fn)], queue_size=4).run()
    frames = sink.frames
    for source, n in ((0, 30), (1, 20), (2, 25)):
        mine = [f for f in frames if f.source == source]
        assert [f.index for f in mine] == list(range(n)) and all((f.image == source).all() for f in mine)
        assert stats.sources[source].frames_in == stats.sources[source].frames_out == n
    assert any(len(sources) > 1 for sources in seen)  # batches mix the sources


def test_a_source_that_fails_ends_alone_and_keeps_its_error():
    def lost():
        yield from numbered(1, 3)
        raise SourceError("lost the stream")

    sink = Collect()
    stats = Runner([Input(numbered(0, 40, delay=0.001)), Input(lost())], [Step("write", sink.fn)]).run()
    assert [f.index for f in sink.frames if f.source == 0] == list(range(40))
    assert [f.index for f in sink.frames if f.source == 1] == [0, 1, 2]
    assert str(stats.sources[1].error) == "lost the stream" and stats.sources[0].error is None


def test_a_live_source_drops_only_its_own_frames_beside_a_file():
    sink = Collect()
    stats = Runner([Input(numbered(0, 60), Policy.WAIT), Input(numbered(1, 60), Policy.DROP_OLDEST)],
                   [Step("slow", slow(0.005)), Step("write", sink.fn)], queue_size=2).run()
    assert stats.sources[0].dropped == 0 and len([f for f in sink.frames if f.source == 0]) == 60
    assert stats.sources[1].dropped > 0
    live = [f.index for f in sink.frames if f.source == 1]
    assert len(live) + stats.sources[1].dropped == 60 and live == sorted(live) and live[-1] == 59
