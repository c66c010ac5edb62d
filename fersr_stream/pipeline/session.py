"""One stream run: work out its sources and outputs (failing fast on bad input), load the models, run the stages
on the runner's threads, and finalize every output however the run ends.

A run reads one source or several (``--source`` repeated, a folder of videos, a glob, a list file: see
:mod:`fersr_stream.sources.many`); their frames share the stages and the networks' batches, while each keeps its
own tracks, smoothing, timestamps and outputs (the output paths' ``{name}`` is the source's name). A source that
fails does not stop the others: the summary reports each, and the run exits 2 when any failed. Files are opened
before the models load, so a bad input fails fast; cameras and streams after, so their frames do not pile up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import signal
import sys
import threading
from pathlib import Path

from .. import config as cfg
from .. import degrade
from .. import device as devices
from ..errors import ConfigError, FersrError, SinkError
from ..sinks.progress import ProgressSink
from ..sources import many
from . import metrics
from . import stages as stage_builder
from .models import Models, load_models
from .runner import Input, Policy, Runner
from .stats import Stats
from .summary import Summary

_NAME = "{name}"  # in an output path: the source's name


def run(config: cfg.StreamConfig, models: Models | None = None, watchers: tuple = ()) -> Summary:
    """Open everything (failing fast on bad input), run the pipeline, and finalize the outputs.

    ``models``: already loaded (benchmarks and archive workers give theirs); None loads them from ``config``.
    ``watchers``: more sinks that see every frame of every source (an archive worker's progress report).

    Raises:
        FersrError: bad input before anything ran; or the one source of a one-source run failed (its outputs are
            finalized first). The sources of a run of several that fail are reported in the summary instead.
    """
    if not config.source.uri:
        raise ConfigError("no source: give --source (cam0, a file, a URL, an image or a folder)")
    out = config.output
    if not (out.video or out.jsonl or out.show):
        raise ConfigError("nothing to write: give --output, --jsonl or --show")
    named = per_source(config)
    plans = list(named.values())
    for plan in plans:
        check_outputs(plan)  # a bad output fails before anything is opened, and nothing is touched
    degrade.validate(config.degrade)
    if config.metrics_port is not None and importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(metrics.INSTALL_HINT)
    device = devices.resolve(config.device)
    summary = Summary(list(named))
    with contextlib.ExitStack() as stack:
        opened = _open(plans, str(device), summary, stack, live=False)
        models = models or load_models(config, device)
        opened.update(_open(plans, str(device), summary, stack, live=True))
        if not opened and summary.failed:
            raise next(iter(summary.failed.values()))
        summary.stats = _run_pipeline(plans, models, opened, summary, stack, watchers)
    if len(plans) == 1 and summary.failed:  # one source: its error is the run's, now that its outputs are whole
        raise next(iter(summary.failed.values()))
    return summary


def per_source(config: cfg.StreamConfig) -> dict[str, cfg.StreamConfig]:
    """One config per source the run reads, by the source's name: its ``source.uri`` that one source, and its
    outputs' ``{name}`` that name.

    Raises:
        ConfigError: several sources but an output without ``{name}`` (they would all write one file).
        SourceError: a glob that matches nothing, a list file that cannot be read.
    """
    uris = many.expand(config.source.uri)
    out = config.output
    if len(uris) > 1:
        for option, path in (("--output", out.video), ("--jsonl", out.jsonl)):
            if path and _NAME not in path:
                raise ConfigError(f"{len(uris)} sources would all write {option} {path}: put {_NAME} in it, e.g. "
                                  f"{Path(path).with_name(_NAME + Path(path).suffix)}")
    plans = {}
    for uri, name in zip(uris, many.names(uris)):
        output = dataclasses.replace(out, video=out.video and out.video.replace(_NAME, name),
                                     jsonl=out.jsonl and out.jsonl.replace(_NAME, name))
        plans[name] = dataclasses.replace(config, source=dataclasses.replace(config.source, uri=(uri,)),
                                          output=output)
    return plans


def _open(plans: list[cfg.StreamConfig], device: str, summary: Summary, stack: contextlib.ExitStack,
          live: bool) -> dict[int, object]:
    """The sources of ``plans`` that are (``live``) or are not cameras and streams, opened: by their place. With
    several sources, one that cannot be opened is reported in ``summary`` and left out; a single one raises."""
    from .. import sources

    opened = {}
    for i, plan in enumerate(plans):
        uri = plan.source.uri[0]
        if many.is_device_or_stream(uri) != live:
            continue
        try:
            opened[i] = stack.enter_context(sources.open_source(uri, plan.source, device=device))
            summary.outages[i] = opened[i].outages  # a live stream's losses, counted as they happen
        except FersrError as exc:
            if len(plans) == 1:
                raise
            summary.failed[i] = exc
    return opened


def _sinks(plan: cfg.StreamConfig, name: str, info, several: bool) -> list:
    """The sinks of one source: its window, its resolved config (saved with the first frame, before the outputs
    replace anything), its files (each taking its output's lock)."""
    from .. import sinks

    out, opened = plan.output, []
    if out.show:  # the one sink that can fail for want of a display: before any file is made
        opened.append(sinks.WindowSink(f"fersr {name}" if several else "fersr"))
    first = Path(out.video or out.jsonl) if (out.video or out.jsonl) else None
    if first is not None:
        opened.append(sinks.RunConfigSink(portable(plan), first.with_name(first.stem + ".fersr.yaml")))
    opened += [sinks.open_sink(path, info, out) for path in (out.video, out.jsonl) if path]
    return opened


def _run_pipeline(plans: list[cfg.StreamConfig], models: Models, opened: dict[int, object], summary: Summary,
                  stack: contextlib.ExitStack, watchers: tuple = ()) -> Stats:
    """Build the stages over the opened sources and run them on the runner's threads until the end of every
    source, a stop or an error; each source's sinks are finalized however it ends."""
    order = sorted(opened)  # runner numbers: the opened sources in plan order
    summary.numbers = order
    per_source = []
    for i in order:
        sinks = _sinks(plans[i], summary.names[i], opened[i].info, len(plans) > 1)
        for sink in sinks:
            stack.callback(sink.close)
        per_source.append(sinks)
        summary.outputs[i] = [p for p in (plans[i].output.video, plans[i].output.jsonl) if p]
    infos = [opened[i].info for i in order]
    totals = [None if info.live else info.frame_count for info in infos]
    limit = plans[0].max_frames
    total = None if None in totals else sum(t if limit is None else min(t, limit) for t in totals)
    stats, stop = Stats(), threading.Event()
    size = (infos[0].width, infos[0].height) if len({(i.width, i.height) for i in infos}) == 1 else None
    stages = stage_builder.build(plans[0], models, sinks=per_source, stats=stats, stop=stop,
                                 shared=[summary, ProgressSink(total), *watchers],
                                 stills=[info.stills for info in infos], frame_size=size)
    on_device = stage_builder.on_device(models)
    # the stop event ends a stream's wait to reconnect
    inputs = [Input(opened[i].frames(on_device, stop=stop), _policy(plans[i].source.policy, opened[i].info.live),
                    limit) for i in order]
    runner = Runner(inputs, stages, queue_size=plans[0].source.queue_size, stats=stats, stop_event=stop)
    heavy = plans[0].enhance.name not in ("none", "bicubic")
    collector = metrics.StreamCollector(stats, [summary.names[i] for i in order], runner.depths,
                                        [opened[i].outages for i in order])
    streams = [i for i in order if opened[i].info.live and "://" in plans[i].source.uri[0]]
    waits = max((plans[i].source.read_timeout for i in streams), default=0)  # a stop's longest wait on a read
    with metrics.serving(plans[0].metrics_port, collector), _stop_on_signals(runner, summary, waits), \
            devices.stream_threads(models.classifier.device, heavy_model=heavy):
        runner.run()
    for number, i in enumerate(order):
        if stats.source(number).error is not None:
            summary.failed[i] = stats.source(number).error
    return stats


def check_outputs(config: cfg.StreamConfig) -> list[str]:
    """The output files of a one-source config (see :func:`per_source`), once each is known to be writable and of
    its option's kind (so the two never share a path), and neither would replace the source; touches nothing.

    Raises:
        SinkError: one line naming the option and the path.
    """
    from .. import sinks

    out, source = config.output, Path(config.source.uri[0]).expanduser()
    if out.video and Path(out.video).suffix.lower() == ".jsonl":
        raise SinkError(f"--output (output.video) takes a video or an image, got {out.video}; JSON lines go to "
                        f"--jsonl")
    if out.jsonl and Path(out.jsonl).suffix.lower() != ".jsonl":
        raise SinkError(f"--jsonl (output.jsonl) takes a .jsonl file, got {out.jsonl}; videos and images go to "
                        f"--output")
    paths = [p for p in (out.video, out.jsonl) if p]
    for path in paths:
        sinks.check_output(path)
        target = Path(path).expanduser()
        if _same_file(target, source):
            raise SinkError(f"{path} is the source; write the output to another file")
        if source.is_dir() and target.suffix.lower() in sinks.IMAGE_EXTENSIONS and \
                _same_file(target.parent, source):
            raise SinkError(f"{path} is in the source folder {source}, where it could replace an input "
                            f"picture; write the images elsewhere")
    return paths


def portable(config: cfg.StreamConfig) -> cfg.StreamConfig:
    """``config`` with its local paths made absolute, so the saved copy repeats the run from any folder."""
    from ..weights import registry

    def absolute(value: str | None) -> str | None:  # registry names and camera names stay as they are
        local = value and value not in registry.REGISTRY and Path(value).expanduser().exists()
        return str(Path(value).expanduser().resolve()) if local else value

    def absolute_output(value: str | None) -> str | None:
        return str(Path(value).expanduser().resolve()) if value else value

    return dataclasses.replace(
        config,
        source=dataclasses.replace(config.source, uri=tuple(absolute(uri) for uri in config.source.uri)),
        detect=dataclasses.replace(config.detect, weights=absolute(config.detect.weights)),
        enhance=dataclasses.replace(config.enhance, weights=absolute(config.enhance.weights)),
        classify=dataclasses.replace(config.classify, weights=absolute(config.classify.weights)),
        output=dataclasses.replace(config.output, video=absolute_output(config.output.video),
                                   jsonl=absolute_output(config.output.jsonl)))


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file or folder (existing or not)."""
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _policy(name: str, live: bool) -> Policy:
    """The backpressure of a source: ``auto`` is drop-oldest for live sources, wait for files (SourceConfig checks
    the name)."""
    if name == "auto":
        return Policy.DROP_OLDEST if live else Policy.WAIT
    return Policy(name)


class _stop_on_signals:
    """SIGINT/SIGTERM stop the runner gracefully (outputs finalized). Signals after the first are noted and the stop
    goes on: cutting the finalization short would spoil the outputs, and leaving while the stage threads still run
    native code aborts the process (C++ "terminate called without an active exception"). A kill -9 still leaves
    the video playable up to about its last second.

    ``read_timeout``: the longest ``source.read_timeout`` of the run's network streams (0: none). A read waiting
    on a silent stream cannot be cut short, so the process may end that much later than the outputs: the first
    signal says so, lest the run look hung."""

    def __init__(self, runner: Runner, summary: Summary, read_timeout: float = 0):
        self.runner, self.summary, self.read_timeout, self.saved = runner, summary, read_timeout, {}

    def _handle(self, signum, _frame):
        if self.summary.interrupted:
            print("fersr-stream: stopping: finishing the outputs first", file=sys.stderr, flush=True)
            return
        self.summary.stopped_by = signum
        self.runner.stop()
        if self.read_timeout:
            print(f"fersr-stream: stopping: the outputs are finalized at once; a network stream's read that waits on a "
                  f"silent server ends within {self.read_timeout:g} s (source.read_timeout)", file=sys.stderr,
                  flush=True)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        return False
