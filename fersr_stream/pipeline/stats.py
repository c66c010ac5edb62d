"""Per-stage timing and the end-of-run summary table."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

_WARM_UP_SHOWN = 0.05  # seconds


@dataclass
class StageStats:
    calls: int = 0  # calls of the stage function: items / calls is its mean batch
    items: int = 0
    busy: float = 0.0  # seconds spent inside the stage function
    cpu: float = 0.0  # CPU seconds of the stage's own thread inside it (busy - cpu: runnable, waiting for a core)

    @property
    def fps(self) -> float:
        """Frames per second of the stage's own busy time (items / busy): what it could sustain were it never
        kept waiting for a core."""
        return self.items / self.busy if self.busy > 0 else float("inf")


@dataclass
class SourceStats:
    """One source's counters: frames read, dropped (live sources that fell behind) and written, and the error
    that ended it early (a lost stream, a damaged file), if one did."""

    frames_in: int = 0
    dropped: int = 0
    frames_out: int = 0
    error: Exception | None = None


@dataclass
class Stats:
    """Counters shared by the runner's threads (each stage writes only its own entry; the readers and the last
    stage count per source under a lock)."""

    stages: dict[str, StageStats] = field(default_factory=dict)
    sources: dict[int, SourceStats] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # e.g. restorations, reuses
    started: float = field(default_factory=time.perf_counter)  # when reading began (after the warm-up)
    warm_up: float = 0.0  # seconds the stages' ``start`` hooks took on their threads before reading began
    first_out: float | None = None  # when the last stage finished its first frames (the pipeline's fill latency)
    finished: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, stage: str, items: int, seconds: float, cpu: float = 0.0) -> None:
        with self._lock:  # the readers of several sources all record "decode"
            entry = self.stages.setdefault(stage, StageStats())
            entry.calls += 1
            entry.items += items
            entry.busy += seconds
            entry.cpu += cpu

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def source(self, index: int) -> SourceStats:
        """Source ``index``'s counters (made on first use)."""
        with self._lock:
            return self.sources.setdefault(index, SourceStats())

    def add(self, index: int, read: int = 0, dropped: int = 0, written: int = 0) -> None:
        """Count frames of source ``index``."""
        entry = self.source(index)
        with self._lock:
            entry.frames_in += read
            entry.dropped += dropped
            entry.frames_out += written

    @property
    def frames_in(self) -> int:
        return sum(s.frames_in for s in self.sources.values())

    @property
    def frames_out(self) -> int:
        return sum(s.frames_out for s in self.sources.values())

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.sources.values())

    @property
    def warmed_up(self) -> bool:
        """Whether the warm-up took long enough to report (it is a few microseconds where nothing warms up)."""
        return self.warm_up >= _WARM_UP_SHOWN

    @property
    def wall(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        return self.frames_out / self.wall if self.wall > 0 else 0.0

    @property
    def fill(self) -> float | None:
        """Seconds from the start until the first frame came out of the last stage (None: none came out)."""
        return None if self.first_out is None else self.first_out - self.started

    def table(self, names: list[str] | None = None) -> str:
        """A one-screen table: per stage, the frames it handled, their mean number per call (its batches), its
        ms/frame inside the running pipeline (wall and the thread's CPU; the difference is time spent waiting for a
        core) and the fps that wall time allows; then the pipeline's fps, each source's (``names``) when there are
        several, and the counters."""
        rows = [f"{'stage':<10} {'frames':>7} {'batch':>6} {'ms/frame':>9} {'cpu ms':>7} {'stage fps':>10}"]
        for name, s in self.stages.items():
            ms, cpu = (1000 * s.busy / s.items, 1000 * s.cpu / s.items) if s.items else (0.0, 0.0)
            batch = s.items / s.calls if s.calls else 0.0
            rows.append(f"{name:<10} {s.items:>7} {batch:>6.1f} {ms:>9.2f} {cpu:>7.2f} {s.fps:>10.1f}")
        rows.append(f"pipeline: {self.frames_out} frames in {self.wall:.2f} s = {self.fps:.1f} fps"
                    f" (read {self.frames_in}, dropped {self.dropped})"
                    + (f"; first frame out after {1000 * self.fill:.0f} ms" if self.fill is not None else "")
                    + (f"; the stages warmed up for {1000 * self.warm_up:.0f} ms before" if self.warmed_up else ""))
        if len(self.sources) > 1:
            for i, s in sorted(self.sources.items()):
                name = names[i] if names else f"source {i}"
                rows.append(f"  {name}: read {s.frames_in}, wrote {s.frames_out} ({s.frames_out / self.wall:.1f} fps)"
                            f", dropped {s.dropped}")
        if self.counters:
            rows.append("counters: " + ", ".join(f"{k} {v}" for k, v in sorted(self.counters.items())))
        return "\n".join(rows)
