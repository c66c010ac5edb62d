"""Temporary outputs of one attempt at one file: written in a folder of their own beside the final outputs, and
renamed into place only when the run ended cleanly, so no half file ever has a final name.

An output ``out/a.mp4`` of the source ``a`` is written as ``out/.fersr-partial/a/<random>/a.mp4``: the same file
name, since FFmpeg picks the container by its extension, and the same file system, so the rename is atomic. The
attempt holds the final outputs' locks from start to rename; a folder left by an attempt that was killed is
removed by the next attempt at that source (which holds the locks, so no live attempt writes there), and the
empty ``.fersr-partial`` by the driver at the end of the run.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from pathlib import Path

from .. import config as cfg
from ..sinks.durable import _sync_folder
from ..sinks.lock import OutputLock
from . import manifest

FOLDER = ".fersr-partial"


def temp_path(final: str | Path, name: str, token: str) -> Path:
    """Where an attempt (``token``) at the source ``name`` writes the output ``final``."""
    final = Path(final).expanduser()
    return final.parent / FOLDER / name / token / final.name


def run_config_path(output: str | Path) -> Path:
    """The resolved config a run saves beside its first output (see the stream session)."""
    output = Path(output)
    return output.with_name(output.stem + ".fersr.yaml")


class Attempt:
    """One attempt at the one-source config ``plan`` (named ``name``): holds its outputs' locks while it lives.

    ``temp_plan`` is ``plan`` writing to the temporary paths; :meth:`commit` renames them into place; :meth:`close`
    releases the locks and removes the temporary folders (and so whatever an attempt that did not commit left).

    Raises:
        SinkError: another process is writing one of the outputs.
    """

    def __init__(self, plan: cfg.StreamConfig, name: str):
        self.plan, self.name, self.token = plan, name, secrets.token_hex(6)
        self.finals = [Path(p).expanduser() for p in manifest.outputs(plan)]
        self._locks: list[OutputLock] = []
        try:
            for final in self.finals:
                final.parent.mkdir(parents=True, exist_ok=True)
                self._locks.append(OutputLock(final))
        except BaseException:
            self.close()
            raise
        self._clean()  # earlier attempts that died left their folders: no one else can be writing there
        temps = [temp_path(final, name, self.token) for final in self.finals]
        for temp in temps:
            temp.parent.mkdir(parents=True, exist_ok=True)
        video, jsonl = (str(temps[self.finals.index(Path(p).expanduser())]) if p else None
                        for p in (plan.output.video, plan.output.jsonl))
        self.temp_plan = dataclasses.replace(plan, output=dataclasses.replace(plan.output, video=video, jsonl=jsonl))
        self.moves = list(zip(temps, self.finals))

    def commit(self) -> None:
        """Save the resolved config as the final outputs name it, then rename every output into place."""
        from ..pipeline.session import portable

        first_temp, first_final = self.moves[0]
        cfg.save(portable(self.plan), run_config_path(first_temp))
        moves = [*self.moves, (run_config_path(first_temp), run_config_path(first_final))]
        for temp, final in moves:
            os.replace(temp, final)
        for folder in {final.parent for _, final in moves}:
            _sync_folder(folder)

    def _clean(self) -> None:
        for folder in {final.parent / FOLDER / self.name for final in self.finals}:
            shutil.rmtree(folder, ignore_errors=True)  # the shared folder stays: other attempts may be starting

    def close(self) -> None:
        """Remove the temporary folders and release the locks; safe to call more than once."""
        if self._locks:
            self._clean()
        for lock in self._locks:
            lock.release()
        self._locks = []

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
