"""Stages on threads joined by bounded queues, fed by one reader thread per source.

The frames of every source go through the one set of stages (so a network's batch holds faces of several sources);
each frame carries its source's number (``Frame.source``). Backpressure policies are named, per source: ``WAIT``
(files: the reader waits, no frame is lost) and ``DROP_OLDEST`` (live sources: the source's oldest queued frame is
dropped, counted per source, so its latency stays bounded). Each source holds at most ``queue_size`` frames in the
first stage's inbox, so a fast file cannot crowd a live camera out.
One stop event ends every thread; the first exception raised by any stage is re-raised after all threads stopped,
and the sink stage's ``close`` always runs, so outputs are finalized on errors and on SIGINT/SIGTERM. A source that
fails (a :class:`~fersr_stream.errors.FersrError` while reading: a lost stream, a damaged file) ends alone and the
others go on; its error is kept in ``Stats.sources``.

Every stage's ``start`` runs on the stage's own thread, and the readers read their first frame once every ``start``
has returned: per-thread set-up (on CUDA, cuDNN's plans, which PyTorch keeps per thread) is paid before the stream
rather than as a stall inside it. Its time is ``Stats.warm_up``, and ``Stats.started`` is when reading began.

Downstream first: on Linux each thread runs :data:`NICE_STEP` nice levels below the thread of the next stage (the
last stage at the process's own level; the reader lowest, except for live sources, whose frames must be taken as
they come). With more busy threads than cores, the CPU then goes to finishing the frames already in flight rather
than to decoding more, so the slowest stage is not held up by the stages that feed it. Of the steps tried on 2
cores (none to four levels), two gave the stream benchmark's clip its highest throughput.
"""

from __future__ import annotations

import collections
import enum
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import FersrError
from ..types import Frame
from .stages.base import Stage
from .stats import Stats

_EOS = object()  # end-of-stream sentinel, passed down every queue
_POLL = 0.05  # seconds between stop-event checks while blocked
_GATHER_SLICE = 0.005  # seconds between looks at the later stages while a batch fills
NICE_STEP = 2  # nice levels between a stage's thread and the next stage's (see the module docstring)


def lower_priority(levels: int) -> None:
    """Run the calling thread ``levels`` nice levels below where it is (Linux only; elsewhere, or where the
    system refuses, nothing changes)."""
    if levels <= 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()  # on Linux a thread id names that thread alone for setpriority
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + levels))
    except OSError:
        pass


class Policy(enum.Enum):
    WAIT = "wait"
    DROP_OLDEST = "drop_oldest"


@dataclass
class Input:
    """One source the runner reads: its frames, what its reader does when the pipeline is behind, and the most
    frames to read (None: all)."""

    frames: Iterable[Frame]
    policy: Policy = Policy.WAIT
    max_frames: int | None = None


class _Inbox:
    """The first stage's queue, shared by every source: each holds at most ``size`` frames in it; when a source's
    share is full, a ``WAIT`` source's reader waits and a ``DROP_OLDEST`` source's oldest frame is dropped
    (counted). Frames come out in the order they came in; once every source has ended, ``get`` gives the
    end-of-stream sentinel."""

    def __init__(self, sources: int, size: int, stats: Stats):
        self._items: collections.deque[Frame] = collections.deque()
        self._held = collections.Counter()
        self._open, self._size, self._stats = sources, size, stats
        self._changed = threading.Condition()

    def put(self, frame: Frame, policy: Policy, stop: threading.Event) -> bool:
        """Queue ``frame`` (of source ``frame.source``); False when the stop event ended a wait."""
        with self._changed:
            while self._held[frame.source] >= self._size:
                if policy is Policy.DROP_OLDEST:
                    del self._items[next(i for i, f in enumerate(self._items) if f.source == frame.source)]
                    self._held[frame.source] -= 1
                    self._stats.add(frame.source, dropped=1)
                    break
                if stop.is_set():
                    return False
                self._changed.wait(_POLL)
            self._items.append(frame)
            self._held[frame.source] += 1
            self._changed.notify_all()
            return True

    def close(self) -> None:
        """One source has ended."""
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def get(self, timeout: float | None = None):
        """The next frame, or the sentinel once every source has ended and every frame was taken."""
        with self._changed:
            if not self._items and self._open and timeout:
                self._changed.wait(timeout)
            if self._items:
                frame = self._items.popleft()
                self._held[frame.source] -= 1
                self._changed.notify_all()
                return frame
            if not self._open:
                return _EOS
            raise queue.Empty

    def get_nowait(self):
        return self.get(None)

    def qsize(self) -> int:
        return len(self._items)


class Runner:
    """Runs ``inputs -> stages[0] -> ... -> stages[-1]``; the last stage is normally the sink.

    Args:
        inputs: the sources to read (closed by the caller), each numbered by its place here.
        stages: processing stages in order.
        queue_size: capacity of each queue between threads (and each source's share of the first).
        stop_event: the one stop event (shared with stages that may end the run, e.g. a closed window).
    """

    def __init__(self, inputs: list[Input], stages: list[Stage], queue_size: int = 8, stats: Stats | None = None,
                 stop_event: threading.Event | None = None):
        self.inputs, self.stages = inputs, stages
        self.stats = stats or Stats()
        self.stop_event = stop_event or threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._queues = [_Inbox(len(inputs), queue_size, self.stats)] + [queue.Queue(queue_size) for _ in stages[1:]]
        self._started = [threading.Event() for _ in stages]  # set when a stage's ``start`` has returned (or failed)

    def depths(self) -> dict[str, int]:
        """Frames waiting before each stage, by the stage's name (for metrics)."""
        return {stage.name: q.qsize() for stage, q in zip(self.stages, self._queues)}

    def stop(self) -> None:
        """Ask every thread to end soon (signal handlers call this); outputs are still finalized."""
        self.stop_event.set()

    def run(self) -> Stats:
        """Run to the end of the sources, a stop, or the first error (re-raised here after all threads ended)."""
        threads = []
        for i, stage in enumerate(self.stages):
            out = self._queues[i + 1] if i + 1 < len(self.stages) else None
            below = NICE_STEP * (len(self.stages) - 1 - i)  # nice levels below the process: downstream first
            args = (self._work, stage, self._queues[i], out, below, self._started[i])
            threads.append(threading.Thread(target=self._guard, args=args, name=stage.name, daemon=True))
        readers = [threading.Thread(target=self._guard, args=(self._read, i, inp), name=f"read{i}", daemon=True)
                   for i, inp in enumerate(self.inputs)]
        self.stats.started = time.perf_counter()
        for t in threads:
            t.start()
        try:
            self._await_starts()
            for t in readers:
                t.start()
            _join(readers + threads)
        except BaseException:
            # never leave while a thread runs: at exit, a daemon thread in native code aborts the process (C++
            # "terminate called without an active exception"), and its sink would be left half-finalized
            self.stop()
            _join([t for t in readers + threads if t.ident is not None])
            raise
        self.stats.finished = time.perf_counter()
        if self._error is not None:
            raise self._error
        return self.stats

    def _guard(self, target, *args) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - every error is re-raised by run()
            with self._error_lock:
                if self._error is None:
                    self._error = exc
            self.stop_event.set()

    def _put(self, q: queue.Queue, item) -> bool:
        """Put unless stopped; False when the stop event ended the wait."""
        while not self.stop_event.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, index: int, source: Input) -> None:
        """Read source ``index`` into the first inbox until it ends, fails (kept in its stats) or the run stops."""
        lower_priority(NICE_STEP * len(self.stages) if source.policy is Policy.WAIT else 0)
        inbox, read = self._queues[0], 0
        try:
            frames = iter(source.frames)
            while not self.stop_event.is_set():
                t0, c0 = time.perf_counter(), time.thread_time()
                frame = next(frames, None)
                if frame is None or self.stop_event.is_set():
                    break
                self.stats.record("decode", 1, time.perf_counter() - t0, time.thread_time() - c0)
                self.stats.add(index, read=1)
                if not inbox.put(frame.replace(source=index), source.policy, self.stop_event):
                    break
                read += 1
                if source.max_frames is not None and read >= source.max_frames:
                    break
        except FersrError as exc:  # this source is lost; the others go on
            self.stats.source(index).error = exc
        finally:
            inbox.close()

    def _await_starts(self) -> None:
        """Wait until every stage's ``start`` has returned (or the run stops); the wait is ``Stats.warm_up``."""
        for started in self._started:
            while not (started.wait(_POLL) or self.stop_event.is_set()):
                pass
        now = time.perf_counter()
        self.stats.warm_up, self.stats.started = now - self.stats.started, now

    def _next_batch(self, q, stage: Stage, later: list[queue.Queue]) -> tuple[list[Frame], bool]:
        """Block for one frame, then take more up to ``stage.batch``: what is queued, and while a later stage
        still has frames queued (``later`` holds their inboxes), what arrives within ``stage.max_wait``.

        Waiting for a fuller batch costs nothing while the stages after this one are busy anyway; once they all
        sit idle, the frames in hand go on at once (the first frames of a run, a live source that the pipeline
        keeps up with), so gathering adds no latency there.
        """
        batch: list[Frame] = []
        while not self.stop_event.is_set():
            try:
                item = q.get(timeout=_POLL)
            except queue.Empty:
                continue
            if item is _EOS:
                return batch, True
            batch.append(item)
            break
        deadline = time.perf_counter() + stage.max_wait
        while batch and len(batch) < stage.batch:
            left = deadline - time.perf_counter()
            gather = left > 0 and any(later_q.qsize() for later_q in later)
            try:
                # while gathering, wait in short slices and look again whether the later stages are still busy
                item = q.get(timeout=min(left, _GATHER_SLICE)) if gather else q.get_nowait()
            except queue.Empty:
                if gather:
                    continue
                break
            if item is _EOS:
                return batch, True
            batch.append(item)
        return batch, self.stop_event.is_set()

    def _work(self, stage: Stage, inbox, outbox: queue.Queue | None, below: int,
              started: threading.Event) -> None:
        lower_priority(below)
        later = self._queues[self._queues.index(inbox) + 1:]
        try:
            try:
                stage.start()
            finally:
                started.set()
            done = False
            while not done:
                batch, done = self._next_batch(inbox, stage, later)
                if not batch:
                    continue
                t0, c0 = time.perf_counter(), time.thread_time()
                out = stage.process(batch)
                self.stats.record(stage.name, len(batch), time.perf_counter() - t0, time.thread_time() - c0)
                if outbox is None:
                    if out and self.stats.first_out is None:
                        self.stats.first_out = time.perf_counter()
                    for frame in out:
                        self.stats.add(frame.source, written=1)
                    continue
                for frame in out:
                    if not self._put(outbox, frame):
                        return
            if outbox is not None:
                self._put(outbox, _EOS)
        finally:
            stage.close()


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        while t.is_alive():  # join in slices so signal handlers run in the main thread
            t.join(_POLL)


def run_serially(stages: list[Stage], frames: list[Frame]) -> list[Frame]:
    """Run ``stages`` one after another on this thread, each over all ``frames`` in its own batches.

    For benchmarks and tests that need the stages' work without the threads. Neither ``start`` nor ``close`` is
    called: where the warm-ups matter, run them first with :func:`start_here` (benchmarks, outside their timing).
    """
    for stage in stages:
        done: list[Frame] = []
        for start in range(0, len(frames), stage.batch):
            done += stage.process(frames[start:start + stage.batch])
        frames = done
    return frames


def start_here(stages: list[Stage]) -> None:
    """Run every stage's ``start`` hook on this thread, for stages that will run on it (serially)."""
    for stage in stages:
        stage.start()
