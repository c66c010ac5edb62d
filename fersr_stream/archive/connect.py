"""Joining Ray: the options every fersr driver (the archive, the study, their benchmarks and tests) gives it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

# the folder holding fersr_stream/ and training/ as this process imported them
HERE = str(Path(__file__).resolve().parents[2])


def init(address: str | None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` or, without one, start a local Ray in this process (``num_cpus``: its
    size, default every core) whose workers import the fersr_stream and training this process imported.

    A local Ray's workers run at this process's priority. Ray lowers its workers' by default (niceness 15): beside
    any busy process they got a few percent of a core, and a worker took about 3 minutes to load its networks
    where it takes 18 s (two busy processes on 2 cores).
    """
    import ray

    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    if address is None:
        paths = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
        options["runtime_env"] = {"env_vars": {"PYTHONPATH": paths}}
        if not os.environ.get("RAY_ADDRESS"):  # else ray.init joins that cluster, which takes no system config
            options.update(num_cpus=num_cpus, _system_config={"worker_niceness": 0})
    ray.init(address=address, **options)
