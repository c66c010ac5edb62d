"""Write: hand each finished frame to its source's sinks and to the run's own (summary, progress), in order; every
sink is finalized when the stage ends."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ...sinks.base import Sink
from ...types import Frame
from .base import Stage


class WriteStage(Stage):
    """Writes each frame to ``sinks[frame.source]`` and to ``shared``; a sink that :attr:`~Sink.wants_stop` (a
    window closed with q or Esc) sets ``stop``."""

    name = "write"

    def __init__(self, sinks: Sequence[Sequence[Sink]], stop: threading.Event, shared: Sequence[Sink] = ()):
        self.sinks, self.shared, self.stop = sinks, shared, stop

    def process(self, frames: list[Frame]) -> list[Frame]:
        for frame in frames:
            for sink in (*self.sinks[frame.source], *self.shared):
                sink.write(frame)
                if sink.wants_stop:
                    self.stop.set()
        return frames

    def close(self) -> None:
        errors = []
        for sink in (*(sink for sinks in self.sinks for sink in sinks), *self.shared):
            try:  # each one, whatever the others do: a failing disk must not keep the others open
                sink.close()
            except Exception as exc:  # noqa: BLE001 - the first is raised once all are closed
                errors.append(exc)
        if errors:
            raise errors[0]
