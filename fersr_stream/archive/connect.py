"""Joining Ray: the options every fersr driver (the archive, the study, their benchmarks and tests) gives it, and
how a driver stops on SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

# the folder holding fersr_stream/ and training/ as this process imported them
HERE = str(Path(__file__).resolve().parents[2])

POLL_S = 0.5
"""Seconds a driver waits on Ray at a time: how soon it notices a signal."""


class Stopped(Exception):
    """SIGINT or SIGTERM stopped the driver: the work in flight was abandoned, what finished is whole.
    ``outcome``: what an archive run got done (the archive fills it in)."""

    def __init__(self, signum: int, outcome=None):
        super().__init__(f"stopped by signal {signum}")
        self.signum, self.outcome = signum, outcome


class Signals:
    """The first SIGINT or SIGTERM the driver got; :meth:`check` raises :class:`Stopped` once there was one (the
    handler itself cannot raise: Ray's waits would turn that into a SystemError)."""

    def __init__(self):
        self.signum: int | None = None

    def note(self, signum, _frame) -> None:
        self.signum = self.signum or signum

    def check(self) -> None:
        if self.signum is not None:
            raise Stopped(self.signum)


@contextlib.contextmanager
def stopped_by_signals():
    """SIGINT and SIGTERM stop the driver at its next :meth:`Signals.check` (Ray's own SIGTERM handler, set when
    it is joined, would dump a stack and abort). Only the main thread can take signals: a driver run from another
    thread leaves them as they are."""
    caught = Signals()
    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.signal(sig, caught.note) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield caught
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


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
