"""A progress bar as a sink: advanced by each frame written."""

from __future__ import annotations

from tqdm import tqdm

from ..types import Frame
from .base import Sink


class ProgressSink(Sink):
    """A tqdm bar over ``total`` frames (files with a known length), or a counter (None: live sources). It draws
    only on a terminal."""

    def __init__(self, total: int | None):
        self.bar = tqdm(total=total, unit="frame", disable=None, dynamic_ncols=True, leave=False)

    def write(self, frame: Frame) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
