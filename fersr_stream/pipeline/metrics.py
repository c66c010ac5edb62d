"""Prometheus metrics of a running stream (``--metrics-port PORT``), served on 127.0.0.1 by ``prometheus_client``.

The counters are read from the run's own :class:`Stats` when Prometheus scrapes, so metrics cost nothing per
frame. Per source (label ``source``, its name): frames read, written and dropped, whether it failed, and a live
stream's losses, reconnects and seconds without frames; per stage
(label ``stage``): frames handled, seconds busy (their rates' ratio is the stage's latency per frame) and frames
queued before it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from ..errors import ConfigError
from ..sources.base import Outages
from .stats import Stats

INSTALL_HINT = "--metrics-port needs prometheus_client: pip install -e '.[metrics]'"


class StreamCollector:
    """A ``prometheus_client`` collector of one run: ``names`` and ``outages`` (what each live stream lost so far)
    by the runner's source numbers, ``depths()`` the frames queued before each stage, by name."""

    def __init__(self, stats: Stats, names: list[str], depths: Callable[[], dict[str, int]],
                 outages: list[Outages] = ()):
        self.stats, self.names, self.depths, self.outages = stats, names, depths, outages

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sources = {name: CounterMetricFamily(f"fersr_frames_{name}", f"frames {what}, per source", labels=["source"])
                   for name, what in (("read", "read"), ("written", "written"), ("dropped", "dropped (live sources "
                                                                                  "that fell behind)"))}
        failed = GaugeMetricFamily("fersr_source_failed", "1 once a source failed (a lost stream, a damaged file)",
                                   labels=["source"])
        for number, s in sorted(self.stats.sources.items()):
            label = [self.names[number]]
            sources["read"].add_metric(label, s.frames_in)
            sources["written"].add_metric(label, s.frames_out)
            sources["dropped"].add_metric(label, s.dropped)
            failed.add_metric(label, 0 if s.error is None else 1)
        yield from sources.values()
        yield failed
        yield from self._outages()
        frames = CounterMetricFamily("fersr_stage_frames", "frames a stage handled", labels=["stage"])
        busy = CounterMetricFamily("fersr_stage_busy_seconds", "seconds a stage spent on its frames", labels=["stage"])
        for name, s in self.stats.stages.items():
            frames.add_metric([name], s.items)
            busy.add_metric([name], s.busy)
        queued = GaugeMetricFamily("fersr_stage_queued_frames", "frames waiting before a stage", labels=["stage"])
        for name, depth in self.depths().items():
            queued.add_metric([name], depth)
        yield from (frames, busy, queued)

    def _outages(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily

        families = [CounterMetricFamily(f"fersr_stream_{name}", help, labels=["source"]) for name, help in (
            ("losses", "times a live stream was lost"), ("reconnects", "times a live stream was opened again"),
            ("seconds_without_frames", "seconds a live stream gave no frames, lost"))]
        now = time.monotonic()  # the live sources' clock: a loss going on counts up to now
        for number, lost in enumerate(self.outages):
            for family, value in zip(families, (lost.losses, lost.reconnects, lost.seconds_at(now))):
                family.add_metric([self.names[number]], value)
        yield from families


@contextlib.contextmanager
def serving(port: int | None, collector: StreamCollector):
    """Serve ``collector`` on http://127.0.0.1:``port``/metrics while the block runs (nothing when ``port`` is
    None).

    Raises:
        ConfigError: prometheus_client is not installed, or the port cannot be listened on.
    """
    if port is None:
        yield
        return
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError as exc:
        raise ConfigError(f"--metrics-port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
