"""What an archive run did, per file, and its summary lines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..words import counted


@dataclass
class Outcome:
    """``done``: name -> the worker's result (frames, faces, seconds); ``skipped``: names already finished;
    ``failed``: name -> (the error, tries). A worker's result may hold ``warnings``, lines its run logged."""

    names: list[str]
    workers: int = 0
    done: dict[str, dict] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, tuple[str, int]] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    wall: float = 0.0

    @property
    def frames(self) -> int:
        return sum(r["frames"] for r in self.done.values())

    @property
    def faces(self) -> int:
        return sum(r["faces"] for r in self.done.values())

    def finish(self) -> None:
        self.wall = time.perf_counter() - self.started

    def text(self) -> str:
        fps = self.frames / self.wall if self.wall > 0 else 0.0
        on = f" on {counted(self.workers, 'worker')}" if self.workers else ""
        head = (f"{counted(len(self.names), 'file')}: {len(self.done)} done, {len(self.skipped)} skipped (already "
                f"done), {len(self.failed)} failed; {counted(self.frames, 'frame')}, {counted(self.faces, 'face')} "
                f"in {self.wall:.1f} s, {fps:.1f} fps{on}")
        lines = [head]
        lines += [f"{name}: warning: {line}" for name, result in self.done.items()
                  for line in result.get("warnings", ())]
        for name, (error, tries) in self.failed.items():
            after = f" after {tries} tries" if tries > 1 else ""
            first, *rest = error.rstrip().splitlines() or [""]
            lines.append(f"{name}: failed{after}: {first}")
            lines += [f"  {line}" for line in rest]  # a bug's traceback
        left = [n for n in self.names if n not in self.done and n not in self.failed and n not in self.skipped]
        if left:  # a stopped run: in flight or not started
            lines.append(f"not done: {', '.join(left)} (their outputs, if any, are as they were; the same command "
                         f"goes on)")
        return "\n".join(lines)
