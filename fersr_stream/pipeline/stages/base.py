"""What every pipeline stage is: a small object the runner drives on a thread of its own."""

from __future__ import annotations

import abc

from ...types import Frame


class Stage(abc.ABC):
    """One step of the pipeline: ``start``, then ``process`` on each batch of frames in order, then ``close``.

    A stage owns its state (a tracker, a smoother, a noise generator, sinks) and nothing else; it can be built and
    run alone (see :func:`fersr_stream.pipeline.runner.run_serially`).

    Attributes:
        name: shown in ``--stats``.
        batch: most frames handed to :meth:`process` at once (stages that batch a network).
        max_wait: seconds to wait for a batch to fill once its first frame arrived (bounds latency); the runner
            waits only while a later stage has frames queued.
    """

    name = "stage"
    batch = 1
    max_wait = 0.0

    def start(self) -> None:
        """Called once on the stage's own thread before the first frame is read (warm-ups). Nothing by default."""

    @abc.abstractmethod
    def process(self, frames: list[Frame]) -> list[Frame]:
        """The frames (1..batch, in order) processed, in order."""

    def close(self) -> None:
        """Called once when the stage's thread ends, however it ends (sinks finalize here). Nothing by default."""


class PerSource(dict):
    """One stateful helper per source (a tracker, a smoother, a noise source...), made on first use by
    ``make(source)``: the frames of several sources share the stages, never their state."""

    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, source: int):
        self[source] = value = self._make(source)
        return value
