"""The run's resolved config, saved beside its outputs with the first frame (see :func:`fersr_stream.config.save`)."""

from __future__ import annotations

from pathlib import Path

from .. import config as cfg
from ..types import Frame
from .base import Sink


class RunConfigSink(Sink):
    """Save ``config`` as YAML at ``path`` when the first frame is written.

    Listed before the file sinks, it is saved before they replace anything: a run that writes no frame leaves an
    earlier file as it was, and one that cannot save it (a full disk) fails before it touches the other outputs.

    Raises:
        SinkError: on the first :meth:`write`, where the file cannot be written.
    """

    def __init__(self, config: cfg.StreamConfig, path: str | Path):
        self._config, self._path, self._saved = config, Path(path), False

    def write(self, frame: Frame) -> None:
        if not self._saved:
            cfg.save(self._config, self._path)
            self._saved = True

    def close(self) -> None:
        """The file is whole once saved: nothing to finalize."""
