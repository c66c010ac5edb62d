"""Stages on threads joined by bounded queues.

Backpressure policies are named: ``WAIT`` (files: the reader waits, no frame is lost) and ``DROP_OLDEST`` (live
sources: a full queue drops its oldest frame, counted in ``Stats.dropped``, so latency stays bounded).
One stop event ends every thread; the first exception raised by any stage is re-raised after all threads stopped,
and the sink stage's ``close`` always runs, so outputs are finalized on errors and on SIGINT/SIGTERM.

A stage's ``start`` runs on the stage's own thread, and the reader reads its first frame once every ``start`` has
returned: per-thread set-up (on CUDA, cuDNN's plans, which PyTorch keeps per thread) is paid before the stream
rather than as a stall inside it. Its time is ``Stats.warm_up``, and ``Stats.started`` is when reading began.

Downstream first: on Linux each thread runs :data:`NICE_STEP` nice levels below the thread of the next stage (the
last stage at the process's own level; the reader lowest, except for live sources, whose frames must be taken as
they come). With more busy threads than cores, the CPU then goes to finishing the frames already in flight rather
than to decoding more, so the slowest stage is not held up by the stages that feed it. Of the steps tried on 2
cores (none to four levels), two gave the stream benchmark's clip its highest throughput.
"""

from __future__ import annotations

import enum
import os
import queue
import sys
import threading
import time
from collections.abc import Iterable

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


class _DropOldestQueue(queue.Queue):
    """A bounded queue whose ``put`` never blocks: when full, the oldest item is dropped and counted."""

    def __init__(self, maxsize: int, stats: Stats):
        super().__init__(maxsize)
        self._stats = stats

    def put(self, item, block=True, timeout=None):  # noqa: ARG002 - same signature as Queue.put
        with self.mutex:
            if self.maxsize > 0 and self._qsize() >= self.maxsize and item is not _EOS:
                self._get()
                self._stats.dropped += 1
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()


class Runner:
    """Runs ``source -> stages[0] -> ... -> stages[-1]``; the last stage is normally the sink.

    Args:
        source: an iterable of frames (closed by the caller).
        stages: processing stages in order.
        policy: what the reader does when the first queue is full.
        queue_size: capacity of each queue between threads.
        max_frames: stop after reading this many frames (None = all).
        stop_event: the one stop event (shared with stages that may end the run, e.g. a closed window).
    """

    def __init__(self, source: Iterable[Frame], stages: list[Stage], policy: Policy = Policy.WAIT,
                 queue_size: int = 8, max_frames: int | None = None, stats: Stats | None = None,
                 stop_event: threading.Event | None = None):
        self.source, self.stages, self.policy = source, stages, policy
        self.max_frames = max_frames
        self.stats = stats or Stats()
        self.stop_event = stop_event or threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        first = (_DropOldestQueue(queue_size, self.stats) if policy is Policy.DROP_OLDEST
                 else queue.Queue(queue_size))
        self._queues = [first] + [queue.Queue(queue_size) for _ in stages[1:]]
        self._started = [threading.Event() for _ in stages]  # set when a stage's ``start`` has returned (or failed)

    def stop(self) -> None:
        """Ask every thread to end soon (signal handlers call this); outputs are still finalized."""
        self.stop_event.set()

    def run(self) -> Stats:
        """Run to the end of the source, a stop, or the first error (re-raised here after all threads ended)."""
        threads = [threading.Thread(target=self._guard, args=(self._read,), name="read", daemon=True)]
        for i, stage in enumerate(self.stages):
            out = self._queues[i + 1] if i + 1 < len(self.stages) else None
            below = NICE_STEP * (len(self.stages) - 1 - i)  # nice levels below the process: downstream first
            args = (self._work, stage, self._queues[i], out, below, self._started[i])
            threads.append(threading.Thread(target=self._guard, args=args, name=stage.name, daemon=True))
        self.stats.started = time.perf_counter()
        for t in threads:
            t.start()
        try:
            _join(threads)
        except BaseException:
            # never leave while a thread runs: at exit, a daemon thread in native code aborts the process (C++
            # "terminate called without an active exception"), and its sink would be left half-finalized
            self.stop()
            _join(threads)
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

    def _read(self) -> None:
        q = self._queues[0]
        lower_priority(NICE_STEP * len(self.stages) if self.policy is Policy.WAIT else 0)
        try:
            self._await_starts()
            frames = iter(self.source)
            while not self.stop_event.is_set():
                t0, c0 = time.perf_counter(), time.thread_time()
                frame = next(frames, None)
                if frame is None or self.stop_event.is_set():
                    break
                self.stats.record("decode", 1, time.perf_counter() - t0, time.thread_time() - c0)
                self.stats.frames_in += 1
                if not self._put(q, frame):
                    break
                if self.max_frames is not None and self.stats.frames_in >= self.max_frames:
                    break
        finally:
            self._put(q, _EOS)

    def _await_starts(self) -> None:
        """Wait until every stage's ``start`` has returned (or the run stops); the wait is ``Stats.warm_up``."""
        for started in self._started:
            while not (started.wait(_POLL) or self.stop_event.is_set()):
                pass
        now = time.perf_counter()
        self.stats.warm_up, self.stats.started = now - self.stats.started, now

    def _next_batch(self, q: queue.Queue, stage: Stage, later: list[queue.Queue]) -> tuple[list[Frame], bool]:
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

    def _work(self, stage: Stage, inbox: queue.Queue, outbox: queue.Queue | None, below: int,
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
                    self.stats.frames_out += len(out)
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
