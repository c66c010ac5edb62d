"""One worker slot of an archive run: the networks loaded once, then one file at a time through the same session
code as a plain run (so its JSON lines are byte for byte those of a run without Ray), into a temporary folder
renamed into place when the run ended cleanly, then the file's manifest."""

from __future__ import annotations

import contextlib
import logging
import os
import time

from .. import config as cfg
from ..errors import FersrError, SourceError, one_line
from ..sinks.base import Sink
from ..types import Frame
from . import manifest
from .partial import Attempt

REPORT_EVERY_S = 0.25


class Reporter(Sink):
    """Tell the tally (a Ray actor handle) how far the file is, about every :data:`REPORT_EVERY_S` seconds."""

    def __init__(self, tally, name: str, total: int):
        self.tally, self.name, self.total, self.done, self._last = tally, name, total, 0, 0.0
        self._send()

    def _send(self) -> None:
        self.tally.report.remote(self.name, self.done, self.total, os.getpid())
        self._last = time.monotonic()

    def write(self, frame: Frame) -> None:
        self.done += 1
        if time.monotonic() - self._last >= REPORT_EVERY_S:
            self._send()

    def close(self) -> None:
        self._send()


class Warnings(logging.Handler):
    """The warnings fersr logs while a worker runs one file (a damaged packet skipped...), to be told by the
    driver's summary: a worker's stderr is not the user's."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(" ".join(record.getMessage().split()))

    @contextlib.contextmanager
    def catching(self):
        logger = logging.getLogger("fersr")
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


def frame_count(plan: cfg.StreamConfig) -> int:
    """The frames the run of ``plan`` should write (its video's count, capped by ``max_frames``); 0 when unknown."""
    import av

    try:
        with av.open(plan.source.uri[0]) as container:
            stream = container.streams.video[0]
            count = stream.frames or int(float(stream.duration * stream.time_base * stream.average_rate))
    except (av.FFmpegError, IndexError, TypeError, OSError):
        count = 0
    return min(count, plan.max_frames) if plan.max_frames else count


def annotate(plan: cfg.StreamConfig, name: str, models, settings: str, watchers: tuple = ()) -> dict:
    """Run the one-source config ``plan`` into a temporary folder, rename its outputs into place, write its
    manifest. Returns its frames, faces and seconds.

    Raises:
        FersrError: a bad input or output (not worth a retry).
        RuntimeError: the run was stopped by a signal before the end (the outputs stay where they were).
    """
    from ..pipeline import session

    start = time.perf_counter()
    with Attempt(plan, name) as attempt:
        summary = session.run(attempt.temp_plan, models, watchers)
        if summary.interrupted:
            raise RuntimeError(f"stopped by signal {summary.stopped_by} before the end of {name}")
        counts = summary.counts[0]
        if not counts.frames:
            raise SourceError(f"{plan.source.uri[0]}: no frame reached the outputs")
        attempt.commit()
        manifest.write(manifest.path(plan, name), manifest.record(plan, settings))
    return {"frames": counts.frames, "faces": counts.faces, "seconds": time.perf_counter() - start}


class Worker:
    """One worker slot (Ray makes it an actor): loads the networks of ``config`` once and finds the tally actor by
    its name (a handle among the arguments would keep Ray from restarting the worker safely); :meth:`annotate` runs
    one file. A user error (a bad file) comes back as ``{"error": line}``: it would fail again, so it is not retried.
    Anything else raises, and the driver retries the file."""

    def __init__(self, config: cfg.StreamConfig, tally: str):
        import ray

        from .. import device as devices
        from ..pipeline.models import load_models

        self.tally, self.models, self.error = ray.get_actor(tally), None, None
        try:
            self.models = load_models(config, devices.resolve(config.device))
        except FersrError as exc:  # told to the driver by ready(): one line, not a dead actor's traceback
            self.error = str(exc)

    def ready(self) -> dict:
        """The worker's pid, and the one-line error that kept its networks from loading (None when they did)."""
        return {"pid": os.getpid(), "error": self.error}

    def annotate(self, name: str, plan: cfg.StreamConfig, settings: str) -> dict:
        """Run one file; its frames, faces, seconds and the warnings logged meanwhile, or its one-line error."""
        reporter = Reporter(self.tally, name, frame_count(plan))
        with Warnings().catching() as logged:
            try:
                result = annotate(plan, name, self.models, settings, (reporter,))
            except FersrError as exc:
                result = {"error": " ".join(str(exc).split()) or one_line(exc)}
            finally:
                self.tally.forget.remote(name)
        return {**result, "warnings": logged.lines}
