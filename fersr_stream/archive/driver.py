"""The driver of an archive run: check everything, skip what is finished, start (or join) Ray, hand each idle
worker one file at a time (largest first), retry the files whose worker died or hit a bug, and sum up.

Ray Core actors rather than Ray Data: one file that fails must fail alone, and each worker keeps its networks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import time
from collections import Counter, deque
from pathlib import Path

from tqdm import tqdm

from .. import config as cfg
from .. import degrade
from ..errors import ConfigError
from . import checks, connect, manifest, partial, sizing
from .connect import POLL_S, Signals, Stopped, stopped_by_signals
from .outcome import Outcome
from .tally import Tally
from .worker import Worker

def run(config: cfg.StreamConfig, address: str | None = None, workers: int | None = None,
        retries: int = 2) -> Outcome:
    """Annotate every file ``config`` names (each with its own outputs by ``{name}``) on a Ray cluster: the one at
    ``address``, else a local one started in this process (or the one this process already joined).

    Raises:
        FersrError: bad settings, a source that is not a file, a bad output, no Ray, no cluster at ``address``,
            networks that cannot be loaded; before any output is touched.
    """
    from ..pipeline import session

    checks.require_ray()
    checks.config(config)
    checks.address(address)
    plans = session.per_source(config)
    checks.sources(plans)
    plans = {name: _absolute(plan) for name, plan in plans.items()}
    for plan in plans.values():
        session.check_outputs(plan)
    degrade.validate(config.degrade)
    settings, outcome = manifest.fingerprint(config), Outcome(list(plans))
    todo = [name for name, plan in plans.items() if not manifest.finished(plan, name, settings)]
    outcome.skipped = [name for name in plans if name not in todo]
    todo.sort(key=lambda name: os.path.getsize(plans[name].source.uri[0]), reverse=True)
    try:
        if todo:
            with _joined(address) as ray:
                _schedule(ray, config, plans, todo, settings, outcome, workers, retries)
    except Stopped as stop:
        outcome.finish()
        stop.outcome = outcome
        raise
    for plan in plans.values():  # the temporary folders' shared parent, when no other run is using it
        with contextlib.suppress(OSError):
            (Path(manifest.outputs(plan)[0]).expanduser().parent / partial.FOLDER).rmdir()
    outcome.finish()
    return outcome


def _absolute(plan: cfg.StreamConfig) -> cfg.StreamConfig:
    """``plan`` with its source and outputs as absolute paths: a worker does not start in the driver's folder."""
    def absolute(path: str | None) -> str | None:
        return str(Path(path).expanduser().absolute()) if path else path

    output = dataclasses.replace(plan.output, video=absolute(plan.output.video), jsonl=absolute(plan.output.jsonl))
    return dataclasses.replace(plan, source=dataclasses.replace(plan.source, uri=(absolute(plan.source.uri[0]),)),
                               output=output)


@contextlib.contextmanager
def _joined(address: str | None):
    """Ray, joined to the cluster at ``address`` or to a local one started here (workers import this very
    fersr_stream); left again at the end when joined here. A Ray this process had joined already is used as is."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    connect.init(address)
    try:
        yield ray
    finally:
        ray.shutdown()


def _start(ray, config: cfg.StreamConfig, count: int | None, files: int, stopped: Signals) -> tuple[list, object]:
    """The worker actors (``count``, by default as many as the cluster holds, never more than ``files``; restarted
    by Ray when their process dies) and the tally, once every worker loaded its networks.

    Raises:
        ConfigError: a worker could not load its networks (missing weights...).
    """
    resources = ray.cluster_resources()
    count = min(count or sizing.default_workers(resources), files)
    name = f"fersr-archive-tally-{secrets.token_hex(4)}"
    tally = ray.remote(Tally).options(name=name, num_cpus=0).remote()
    options = sizing.actor_options(resources, count)
    actor = ray.remote(Worker).options(max_restarts=-1, max_task_retries=0, **options)
    workers = [actor.remote(config, name) for _ in range(count)]
    pending = [w.ready.remote() for w in workers]
    while pending:  # waited for in slices, so that a Ctrl-C is not held up by the networks' loading
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
        stopped.check()
    for state in ray.get([w.ready.remote() for w in workers]):
        if state["error"]:
            raise ConfigError(f"a worker could not load the networks: {state['error']}")
    return workers, tally


def _schedule(ray, config, plans, todo, settings, outcome: Outcome, count, retries: int) -> None:
    """Hand each idle worker the next file until every file is done or failed; draw the progress bar."""
    with stopped_by_signals() as stopped:
        workers, tally = _start(ray, config, count, len(todo), stopped)
        outcome.workers = len(workers)
        bar = tqdm(total=len(todo), unit="file", disable=None, dynamic_ncols=True, leave=False,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} files [{elapsed}<{remaining}{postfix}]")
        try:
            queue = _Queue(ray, plans, todo, settings, outcome, workers, retries)
            queue.run(lambda: (stopped.check(), _draw(bar, tally, ray, outcome)), forget=tally.forget.remote)
        finally:
            bar.close()
            for actor in (*workers, tally):
                ray.kill(actor)


class _Queue:
    """The files still to do and the workers' states: idle, on a file (``running``: attempt -> (worker, file)),
    or being restarted by Ray after their process died (``probes``: a call to ``ready`` -> worker), handed no file
    until they answer again."""

    def __init__(self, ray, plans, todo, settings, outcome: Outcome, workers: list, retries: int):
        self.ray, self.plans, self.settings, self.outcome, self.retries = ray, plans, settings, outcome, retries
        self.todo, self.tries, self.idle = deque(todo), Counter(), list(workers)
        self.running: dict = {}
        self.probes: dict = {}

    def run(self, draw, forget) -> None:
        """Until every file is done or failed; ``draw`` after each wait, ``forget(name)`` the progress of an
        attempt whose worker died."""
        while self.todo or self.running:
            if not self.idle and not self.running and not self.probes:
                raise RuntimeError("every Ray worker died for good; the files left were not annotated")
            while self.idle and self.todo:
                worker, name = self.idle.pop(), self.todo.popleft()
                self.tries[name] += 1
                self.running[worker.annotate.remote(name, self.plans[name], self.settings)] = (worker, name)
            ready, _ = self.ray.wait([*self.running, *self.probes], num_returns=1, timeout=POLL_S)
            for ref in ready:
                if ref in self.probes:
                    self._probed(ref, self.probes.pop(ref))
                else:
                    worker, name = self.running.pop(ref)
                    if not self._settle(ref, worker, name):
                        forget(name)
            draw()

    def _probed(self, ref, worker) -> None:
        """A worker Ray restarts answers again (idle), is still restarting (asked again), or died for good."""
        try:
            self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError:
            time.sleep(POLL_S / 5)
            self.probes[worker.ready.remote()] = worker
        except self.ray.exceptions.RayActorError:
            pass  # dead for good (Ray gave up restarting it): the others go on
        else:
            self.idle.append(worker)

    def _settle(self, ref, worker, name: str) -> bool:
        """Note how the attempt ``ref`` at ``name`` ended; the file goes back first in line when it is tried again
        (a retry should not wait for the whole archive). False when the worker died (its progress is stale)."""
        error = None
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:  # the worker process died (killed, out of memory)
            error = f"its worker died: {' '.join(str(exc).split())[:300]}"
            self.probes[worker.ready.remote()] = worker
        except self.ray.exceptions.RayTaskError as exc:  # a bug: its traceback is the report
            error = str(exc)
            self.idle.append(worker)
        else:
            self.idle.append(worker)
            if "error" in result:
                self.outcome.failed[name] = (result["error"], self.tries[name])  # a user error: it would fail again
            else:
                self.outcome.done[name] = result
        if error is not None and self.tries[name] <= self.retries:
            self.todo.appendleft(name)
        elif error is not None:
            self.outcome.failed[name] = (error, self.tries[name])
        return worker not in self.probes.values()


def _draw(bar: tqdm, tally, ray, outcome: Outcome) -> None:
    """Files finished, plus each file in flight by its share of frames; frames written and frames per second."""
    flying = ray.get(tally.snapshot.remote())
    shares = sum(done / total for done, total, _ in flying.values() if total)
    bar.n = len(outcome.done) + len(outcome.failed) + min(shares, len(flying))
    frames = outcome.frames + sum(done for done, _, _ in flying.values())
    seconds = bar.format_dict["elapsed"]
    bar.set_postfix_str(f"{frames} frames, {frames / seconds if seconds else 0:.1f} fps", refresh=True)
