"""The progress of the files in flight: workers report to one small actor, the driver polls it."""

from __future__ import annotations


class Tally:
    """Frames done and expected of each file in flight, and the worker process on it (Ray makes it an actor)."""

    def __init__(self):
        self.files: dict[str, tuple[int, int, int]] = {}

    def report(self, name: str, done: int, total: int, pid: int) -> None:
        self.files[name] = (done, total, pid)

    def forget(self, name: str) -> None:
        self.files.pop(name, None)

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """``{name: (frames done, frames expected (0: unknown), worker pid)}``."""
        return dict(self.files)
