"""Prometheus metrics of a running stream (pipeline/metrics.py): what is served, where, and the errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from fersr_stream.errors import ConfigError, SourceError
from fersr_stream.pipeline import metrics
from fersr_stream.pipeline.stats import Stats
from fersr_stream.sources.base import Outages

pytest.importorskip("prometheus_client", reason="the metrics extra: pip install -e '.[metrics]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def written(text: str) -> float:
    """The clip's frames written so far, 0 before the run has any (the outage counters name the source from the
    start, so its name alone says nothing)."""
    prefix = 'fersr_frames_written_total{source="clip"} '
    return max((float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)), default=0.0)


def test_the_run_s_counters_are_served_per_source_and_per_stage():
    stats = Stats()
    stats.add(0, read=12, written=10)
    stats.add(1, read=7, dropped=3, written=4)
    stats.source(1).error = SourceError("lost")
    stats.record("detect", 4, 0.2)
    lost = Outages(losses=2, reconnects=1, seconds=6.5)
    collector = metrics.StreamCollector(stats, ["door", "hall"], lambda: {"detect": 2, "write": 0}, [Outages(), lost])
    port = free_port()
    with metrics.serving(port, collector):
        text = scrape(port)
    assert 'fersr_frames_read_total{source="door"} 12.0' in text
    assert 'fersr_frames_dropped_total{source="hall"} 3.0' in text
    assert 'fersr_source_failed{source="hall"} 1.0' in text and 'fersr_source_failed{source="door"} 0.0' in text
    assert 'fersr_stage_busy_seconds_total{stage="detect"} 0.2' in text
    assert 'fersr_stage_queued_frames{stage="detect"} 2.0' in text
    assert 'fersr_stream_losses_total{source="hall"} 2.0' in text
    assert 'fersr_stream_reconnects_total{source="door"} 0.0' in text
    assert 'fersr_stream_seconds_without_frames_total{source="hall"} 6.5' in text
    with pytest.raises(OSError):
        scrape(port)  # served while the block ran, and no longer


def test_a_loss_going_on_counts_its_seconds_while_it_lasts():
    down = Outages(seconds=1.5)
    down.lost(since=time.monotonic() - 4.0)  # the last frame came 4 s ago; reconnecting now
    collector = metrics.StreamCollector(Stats(), ["yard"], dict, [down])
    port = free_port()
    with metrics.serving(port, collector):
        text = scrape(port)
    prefix = 'fersr_stream_seconds_without_frames_total{source="yard"} '
    seconds = next(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))
    assert 1.5 + 4.0 <= seconds < 1.5 + 4.0 + 5  # an alert on it fires during the outage, not after it
    down.back(now=down.down_since + 6.0)
    assert (down.seconds, down.down_since, down.seconds_at(time.monotonic())) == (7.5, None, 7.5)


def test_a_port_taken_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}"):
            with metrics.serving(port, metrics.StreamCollector(Stats(), [], dict)):
                pass


def test_a_stream_serves_its_metrics_while_it_runs(make_clip, tmp_path):
    clip, _ = make_clip(n_frames=400, width=160, height=120, fps=25, min_size=50, max_size=60)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fersr_stream.cli.stream", "--source", str(clip), "--jsonl",
                             str(tmp_path / "out.jsonl"), "--metrics-port", str(port), "--device", "cpu"],
                            stderr=subprocess.PIPE, text=True)
    seen: list[str] = []

    def poll():
        while proc.poll() is None:
            try:
                text = scrape(port)
            except OSError:
                time.sleep(0.05)
                continue
            if written(text) > 0:
                seen.append(text)
                return
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    _, err = proc.communicate(timeout=180)
    poller.join()
    assert proc.returncode == 0, err
    assert seen, "no metrics were served while the run went"
    assert 'fersr_frames_read_total{source="clip"}' in seen[0]
    assert 'fersr_stage_frames_total{stage="classify"}' in seen[0]  # a frame written went through every stage
