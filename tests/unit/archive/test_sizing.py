"""Workers per cluster by default, and each one's share of the GPUs or CPUs."""

from __future__ import annotations

import pytest

from fersr_stream.archive import sizing


@pytest.mark.parametrize("resources, workers", [
    ({"CPU": 2.0}, 1), ({"CPU": 16.0}, 4), ({"CPU": 7.0}, 1), ({"CPU": 64.0, "GPU": 8.0}, 8), ({}, 1),
])
def test_default_workers(resources, workers):
    assert sizing.default_workers(resources) == workers


def test_workers_share_the_gpus_in_fractions_that_fit():
    options = sizing.actor_options({"CPU": 16.0, "GPU": 2.0}, 3)
    assert options["num_gpus"] * 3 <= 2 and options["num_gpus"] > 0.66
    assert sizing.actor_options({"CPU": 16.0, "GPU": 2.0}, 2) == {"num_gpus": 1, "num_cpus": 1}


def test_cpu_workers_take_their_share_and_all_fit():
    assert sizing.actor_options({"CPU": 16.0}, 4) == {"num_gpus": 0, "num_cpus": 4}
    assert sizing.actor_options({"CPU": 2.0}, 2) == {"num_gpus": 0, "num_cpus": 1}
    options = sizing.actor_options({"CPU": 2.0}, 3)
    assert 0 < options["num_cpus"] * 3 <= 2
