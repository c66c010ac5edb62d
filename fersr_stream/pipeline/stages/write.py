"""Write: hand each finished frame to every sink, in order; the sinks are finalized when the stage ends."""

from __future__ import annotations

import threading

from ...sinks.base import Sink
from ...types import Frame
from .base import Stage


class WriteStage(Stage):
    """Writes to ``sinks``; a sink that :attr:`~Sink.wants_stop` (a window closed with q or Esc) sets ``stop``."""

    name = "write"

    def __init__(self, sinks: list[Sink], stop: threading.Event):
        self.sinks, self.stop = sinks, stop

    def process(self, frames: list[Frame]) -> list[Frame]:
        for frame in frames:
            for sink in self.sinks:
                sink.write(frame)
                if sink.wants_stop:
                    self.stop.set()
        return frames

    def close(self) -> None:
        errors = []
        for sink in self.sinks:  # each one, whatever the others do: a failing disk must not keep the others open
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - the first is raised once all are closed
                errors.append(exc)
        if errors:
            raise errors[0]
