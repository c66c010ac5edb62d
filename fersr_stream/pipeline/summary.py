"""The end-of-run summary: a sink that counts what was written, printed as one screen when the run ends."""

from __future__ import annotations

import collections

import numpy as np

from ..classify.labels import Emotion
from ..sinks.base import Sink
from ..sources.base import Outages
from ..types import Frame
from .stats import Stats


class Summary(Sink):
    """Counts frames, faces, tracks and emotions as they are written; ``stats``, ``outputs``, ``stopped_by`` and
    ``outages`` (a live stream's losses and reconnects) are filled in by the session."""

    def __init__(self):
        self.frames = 0
        self.faces = 0
        self.tracks: set[int] = set()
        self.emotions: collections.Counter = collections.Counter()
        self.stats: Stats | None = None
        self.outputs: list[str] = []
        self.stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped the run early
        self.outages = Outages()

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None

    def write(self, frame: Frame) -> None:
        self.frames += 1
        self.faces += len(frame.faces)
        self.tracks.update(int(t) for t in frame.faces.track_ids if t >= 0)
        if frame.faces.probs is not None:
            self.emotions.update(Emotion(int(k)).label for k in np.argmax(frame.faces.probs, axis=1))

    def close(self) -> None:
        """Nothing to finalize: the counts are read after the run."""

    def text(self, with_stats: bool = False) -> str:
        lines = [f"{'stopped early: ' if self.interrupted else ''}{self.frames} frames, {self.faces} faces, "
                 f"{len(self.tracks)} tracks"]
        if self.outages.losses:
            lines.append(f"stream: {self.outages.text()}")
        if self.emotions:
            total = sum(self.emotions.values())
            shares = (f"{k} {100 * v / total:.0f}%" for k, v in self.emotions.most_common())
            lines.append("emotions: " + ", ".join(shares))
        if self.stats is not None:
            s = self.stats
            dropped = f", {s.dropped} frames dropped" if s.dropped else ""
            warm = f" after a {s.warm_up:.1f} s warm-up" if s.warmed_up else ""
            lines.append(f"time: {s.wall:.1f} s{warm}, {s.fps:.1f} fps{dropped}"
                         + "".join(f", {k} {v}" for k, v in sorted(s.counters.items())))
            if with_stats:
                lines.append(s.table())
        if self.frames:
            lines += [f"wrote {p}" for p in self.outputs]
        elif self.outputs:  # the sinks open their files with the first frame
            lines.append("nothing written: no frame reached the outputs (files there are left as they were)")
        return "\n".join(lines)
