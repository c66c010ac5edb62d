"""The end-of-run summary: a sink that counts what was written, per source, printed as one screen when the run
ends."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from ..classify.labels import Emotion
from ..sinks.base import Sink
from ..sources.base import Outages
from ..types import Frame
from ..words import counted
from .stats import Stats


@dataclass
class Counts:
    """What one source's frames held: frames, faces, track ids and the emotions classified."""

    frames: int = 0
    faces: int = 0
    tracks: set[int] = field(default_factory=set)
    emotions: collections.Counter = field(default_factory=collections.Counter)

    def add(self, frame: Frame) -> None:
        self.frames += 1
        self.faces += len(frame.faces)
        self.tracks.update(int(t) for t in frame.faces.track_ids if t >= 0)
        if frame.faces.probs is not None:
            self.emotions.update(Emotion(int(k)).label for k in np.argmax(frame.faces.probs, axis=1))

    def line(self) -> str:
        return _line(self.frames, self.faces, len(self.tracks))


def _line(frames: int, faces: int, tracks: int) -> str:
    return f"{counted(frames, 'frame')}, {counted(faces, 'face')}, {counted(tracks, 'track')}"


class Summary(Sink):
    """Counts each source's frames as they are written. The session fills in ``numbers`` (the runner's number of
    each source read: its place in ``names``), ``outputs``, ``failed`` and ``outages`` (a live stream's losses and
    reconnects) by place, ``stats`` and ``stopped_by``."""

    def __init__(self, names: list[str]):
        self.names = names
        self.numbers: list[int] = list(range(len(names)))
        self.counts = {i: Counts() for i in range(len(names))}
        self.outputs: dict[int, list[str]] = {}
        self.failed: dict[int, Exception] = {}
        self.outages: dict[int, Outages] = {}
        self.stats: Stats | None = None
        self.stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped the run early

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None

    def write(self, frame: Frame) -> None:
        self.counts[self.numbers[frame.source]].add(frame)

    def close(self) -> None:
        """Nothing to finalize: the counts are read after the run."""

    def text(self, with_stats: bool = False) -> str:
        counts = self.counts.values()
        emotions = sum((c.emotions for c in counts), collections.Counter())
        several = len(self.names) > 1
        head = f"{len(self.names)} sources: " if several else ""
        total = _line(sum(c.frames for c in counts), sum(c.faces for c in counts), sum(len(c.tracks) for c in counts))
        lines = [f"{'stopped early: ' if self.interrupted else ''}{head}{total}"]
        if emotions:
            shares = (f"{k} {100 * v / sum(emotions.values()):.0f}%" for k, v in emotions.most_common())
            lines.append("emotions: " + ", ".join(shares))
        if self.stats is not None:
            lines += self._timing(with_stats)
        for i, name in enumerate(self.names):
            lines += self._source(i, name, several)
        return "\n".join(lines)

    def _timing(self, with_stats: bool) -> list[str]:
        s = self.stats
        dropped = f", {counted(s.dropped, 'frame')} dropped" if s.dropped else ""
        warm = f" after a {s.warm_up:.1f} s warm-up" if s.warmed_up else ""
        lines = [f"time: {s.wall:.1f} s{warm}, {s.fps:.1f} fps{dropped}"
                 + "".join(f", {k} {v}" for k, v in sorted(s.counters.items()))]
        if with_stats:
            lines.append(s.table([self.names[i] for i in self.numbers]))
        return lines

    def _source(self, i: int, name: str, several: bool) -> list[str]:
        """The lines of source ``i``: its counts (several sources), what it wrote, or why it failed."""
        prefix = f"{name}: " if several else ""
        if i in self.failed:
            failed = " ".join(str(self.failed[i]).split())
            done = f" after writing {self.counts[i].line()}" if self.counts[i].frames else ""  # not frame numbers
            lines = [f"{prefix}failed{done}: {failed}"]
        else:
            lines = [f"{prefix}{self.counts[i].line()}"] if several else []
        if i in self.outages and self.outages[i].losses:
            lines.append(f"{prefix}stream: {self.outages[i].text()}")
        outputs = self.outputs.get(i, [])
        if self.counts[i].frames:
            lines += [f"{prefix}wrote {p}" for p in outputs]
        elif outputs:  # the sinks open their files with the first frame
            lines.append(f"{prefix}nothing written: no frame reached the outputs (files there are left as they were)")
        return lines
