"""Benchmark of the study's machinery on the smoke config (CPU by default).

Prints training throughput (images/s) and the share of each epoch the model spends waiting for data, for a
few DataLoader worker counts, then the restoration cache cold vs. warm: restorer calls and seconds.

    python -m training.bench [--config smoke] [--epochs 2] [--workers 0,2]

Timings on a shared machine are noisy: compare rows of one run, and say which machine they came from.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from . import config as tconfig
from . import engine, phases
from .cache import Condition, RestorationCache

SMOKE = tconfig.installed()["smoke"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(SMOKE))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fersr-bench-") as tmp:
        config = tconfig.load(args.config, [f"out={tmp}", *args.overrides])
        study = phases.Study(config, progress=False)
        study.prepare()
        study.load_faces()
        fold = study.folds[(config.protocol.only_folds or (0,))[0]]
        train, val = study.split(fold.train, Condition()), study.split(fold.val, Condition())
        arch = next(m for m in config.train.models if m in tconfig.TRAINABLE)
        print(f"device {study.device}, torch threads {torch.get_num_threads()}, {arch} at "
              f"{config.train.input_size} px, batch {config.train.batch}, {len(train.labels)} training faces")
        print("workers  images/s (per epoch)          data wait share")
        for workers in (int(w) for w in args.workers.split(",")):
            train_config = tconfig.TrainConfig(**{**vars(config.train), "workers": workers, "epochs": args.epochs,
                                                  "patience": 0})
            torch.manual_seed(0)
            model = engine.build_model(arch, config.train.pretrained)
            result = engine.fit(model, arch, train, val, train_config, study.device,
                                Path(tmp) / f"bench-{workers}.pt", progress=False)
            rates = ", ".join(f"{h['images_per_s']:.1f}" for h in result.history)
            waits = ", ".join(f"{100 * h['data_wait']:.1f} %" for h in result.history)
            print(f"{workers:>7}  {rates:<30}  {waits}")
        restored = [Condition(w, r) for w in config.phases.widths for r in study.restorers]
        if not restored:
            print("no restorer in the config: cache benchmark skipped")
            return
        faces = study.split(fold.test, Condition()).crops
        keys = [study.keys[i] for i in study.faceset.index(fold.test)]
        cache_root = Path(tmp) / "bench-cache"
        for label in ("cold", "warm"):
            cache = RestorationCache(cache_root, config.phases.degrade, study.device, config.cache.batch, False)
            start = time.perf_counter()
            for condition in restored:
                cache.fill(condition, faces, keys)
                cache.load(condition, faces, keys)
            seconds = time.perf_counter() - start
            print(f"restoration cache {label}: {cache.calls} restorer calls, {cache.restored} faces restored, "
                  f"{len(restored) * len(keys)} faces served, {seconds:.2f} s")


if __name__ == "__main__":
    main()
