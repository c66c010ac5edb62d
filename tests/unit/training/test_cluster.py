"""The study's Ray driver stops on SIGINT or SIGTERM while it waits on Ray: the tasks in flight are cancelled and
:class:`connect.Stopped` carries the signal (no Ray is started: a stand-in answers its calls)."""

from __future__ import annotations

import os
import signal

import pytest

from fersr_stream.archive import connect
from training.cluster import RayExecutor


class _Ray:
    """Ray's wait, get and cancel for tasks that finish when ``finished`` says so."""

    def __init__(self, finished: set[str]):
        self.finished, self.cancelled = finished, []

    def wait(self, pending, num_returns, timeout):
        ready = [r for r in pending if r in self.finished][:num_returns]
        return ready, [r for r in pending if r not in ready]

    def get(self, ref):
        return f"cell {ref}"

    def cancel(self, ref, force):
        self.cancelled.append(ref)


def test_a_sigterm_while_waiting_cancels_the_tasks_in_flight_and_says_which_signal():
    ray = _Ray(finished={"a"})
    with connect.stopped_by_signals() as stopped:
        os.kill(os.getpid(), signal.SIGTERM)  # noted, not raised: Ray's waits cannot take an exception
        with pytest.raises(connect.Stopped) as stop:
            RayExecutor(progress=False)._wait(ray, ["a", "b", "c"], stopped, "cell")
    assert stop.value.signum == signal.SIGTERM
    assert ray.cancelled == ["b", "c"]


def test_without_a_signal_every_task_is_waited_for():
    ray = _Ray(finished={"a", "b"})
    with connect.stopped_by_signals() as stopped:
        RayExecutor(progress=False)._wait(ray, ["a", "b"], stopped, "cell")
    assert ray.cancelled == []
