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
        for sink in self.sinks:
            sink.close()
