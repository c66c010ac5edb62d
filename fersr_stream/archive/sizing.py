"""How many workers a cluster gets by default, and each one's share of it."""

from __future__ import annotations

import math

CPUS_PER_WORKER = 4  # a CPU pipeline keeps about this many cores busy (decode, detect, classify, encode)


def default_workers(resources: dict) -> int:
    """One worker per GPU, else one per :data:`CPUS_PER_WORKER` CPUs (at least one). ``resources``: Ray's
    ``cluster_resources()``."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus
    return max(1, int(resources.get("CPU", 1)) // CPUS_PER_WORKER)


def actor_options(resources: dict, workers: int) -> dict:
    """Ray options of one worker actor: the cluster's GPUs shared among the workers (fractions when there are more
    workers than GPUs), else its CPUs (a fraction of one each when there are more workers than CPUs, so that every
    worker is placed)."""
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus:
        return {"num_gpus": 1 if workers <= gpus else _fraction(gpus / workers),
                "num_cpus": 1 if workers <= cpus else _fraction(cpus / workers)}
    share = cpus / workers
    return {"num_gpus": 0, "num_cpus": int(share) if share >= 1 else _fraction(share)}


def _fraction(share: float) -> float:
    """``share`` rounded down to Ray's resolution (1e-4), so that ``workers`` of them fit in the whole."""
    return max(1e-4, math.floor(share * 1e4) / 1e4)
