"""The study on a Ray cluster (``fersr-train run --executor ray``): the restoration cache filled by one Ray task
per shard, then one Ray task per unfinished training cell, each on its share of the cluster's GPUs (or CPUs).

The driver prepares the study as a serial run does (checks, the experiment's header, the faces cropped once into
the shared cache), so every task finds the faces and the splits there; a task builds the same :class:`Study` and
runs the same code as the serial run on its shard or cell, with the same seeds, so the predictions and the report
are those of the serial run. Finished cells are skipped (a cell's test files mark it done), so a restarted driver
resumes from what is done. The experiment folder and the cache must be on storage every node sees.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fersr_stream.archive import checks, connect

from .config import StudyConfig


def absolute(config: StudyConfig) -> StudyConfig:
    """``config`` with its folders made absolute: Ray's workers do not start in the driver's folder."""
    data = config.data
    root = str(Path(data.root).expanduser().resolve()) if data.root else data.root
    return dataclasses.replace(config, out=str(Path(config.out).expanduser().resolve()),
                               data=dataclasses.replace(data, root=root))


def _study(config: StudyConfig):
    from . import phases

    study = phases.Study(config, progress=False)
    study.prepare()
    study.load_faces()
    return study


def restore_shard(config: StudyConfig, shard: tuple[int, int]) -> dict:
    """One Ray task: fill the cache with shard ``shard`` of the faces the grid restores."""
    return _study(config).restore_all(shard)


def run_cell(config: StudyConfig, cell, tests) -> str:
    """One Ray task: train (or resume) and test one cell, as the serial run does; returns its tag."""
    _study(config).run_cell(cell, tests)
    return f"{cell.model} {cell.train.tag} fold {cell.fold}"


class RayExecutor:
    """Runs a prepared study's cache shards and cells as Ray tasks (see the module docstring)."""

    def __init__(self, address: str | None = None, workers: int | None = None, progress: bool = True):
        checks.require_ray()
        checks.address(address)
        self.address, self.workers, self.progress = address, workers, progress

    def run(self, study) -> None:
        """Fill the cache, then run every unfinished cell of ``study`` (whose faces are loaded)."""
        import ray

        from fersr_stream.archive import sizing

        from . import phases

        joined = not ray.is_initialized()
        if joined:
            connect.init(self.address)
        try:
            with connect.stopped_by_signals() as stopped:  # after joining: Ray's own SIGTERM handler aborts
                resources = ray.cluster_resources()
                count = self.workers or sizing.default_workers(resources)
                options = sizing.actor_options(resources, count)
                config = absolute(study.config)
                shard = ray.remote(restore_shard).options(**options)
                self._wait(ray, [shard.remote(config, (i, count)) for i in range(count)], stopped, "shard")
                todo = [(cell, tests) for cell, tests in study.cells()
                        if not all(phases.result_file(cell.folder(study.folder), t).is_file() for t in tests)]
                task = ray.remote(run_cell).options(max_retries=2, **options)
                self._wait(ray, [task.remote(config, cell, tests) for cell, tests in todo], stopped, "cell")
        finally:
            if joined:
                ray.shutdown()

    def _wait(self, ray, refs: list, stopped: connect.Signals, unit: str) -> None:
        """Every task to its end; the first that failed for good, or a signal (:class:`connect.Stopped`), raises
        and the others are cancelled."""
        from tqdm import tqdm

        with tqdm(total=len(refs), unit=unit, disable=not self.progress or None, leave=False) as bar:
            pending = list(refs)
            try:
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1, timeout=connect.POLL_S)
                    stopped.check()
                    for ref in ready:
                        result = ray.get(ref)  # raises the task's error
                        if unit == "cell":
                            bar.set_postfix_str(result)  # the cell's tag
                        bar.update(1)
            except BaseException:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
