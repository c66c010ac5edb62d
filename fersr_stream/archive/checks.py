"""What ``--executor ray`` refuses, each in one line (exit 2) before anything starts."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from .. import config as cfg
from ..errors import ConfigError
from ..sinks.video import VIDEO_EXTENSIONS
from ..sources import many

INSTALL = "pip install -e '.[ray]'"
CONNECT_TIMEOUT_S = 3.0


def flags(executor: str, ray_flags: dict) -> None:
    """Ray's flags (``--ray-address``, ``--workers``, ``--retries``) belong with ``--executor ray``."""
    given = [f"--{k.replace('_', '-')}" for k, v in ray_flags.items() if v is not None]
    if given and executor != "ray":
        raise ConfigError(f"{' '.join(given)} only {'apply' if len(given) > 1 else 'applies'} with --executor ray")


def require_ray() -> None:
    try:
        import ray  # noqa: F401 - the driver imports it next anyway
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None


def config(config: cfg.StreamConfig) -> None:
    """An archive run reads files and writes files: no window, no metrics server, outputs of video or JSON lines."""
    if config.output.show:
        raise ConfigError("--show cannot be used with --executor ray (the workers have no window); write --output")
    if config.metrics_port is not None:
        raise ConfigError("--metrics-port cannot be used with --executor ray; the progress bar and the summary "
                          "report the run")
    video = config.output.video
    if not (video or config.output.jsonl):
        raise ConfigError("nothing to write: give --output, --jsonl or both (with {name} in them for several files)")
    if video and Path(video).suffix.lower() not in VIDEO_EXTENSIONS:
        raise ConfigError(f"--executor ray writes videos and JSON lines, not {video}; use one of "
                          f"{' '.join(VIDEO_EXTENSIONS)}")


def sources(plans: dict[str, cfg.StreamConfig]) -> None:
    """Every source is a video file (cameras, streams and folders of images have no end a worker could reach, or
    are not one file)."""
    for plan in plans.values():
        uri = plan.source.uri[0]
        if many.is_device_or_stream(uri):
            raise ConfigError(f"--executor ray annotates video files; {uri} is a camera or a live stream: run it "
                              f"without --executor")
        if not Path(uri).expanduser().is_file():
            raise ConfigError(f"--executor ray annotates video files; {uri} is not a file")


def address(value: str | None) -> None:
    """Fail fast on a Ray address that nothing answers (Ray itself would retry for minutes)."""
    if value is None or value in ("auto", "local"):
        return
    parts = urlsplit(value if "://" in value else f"ray://{value}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise ConfigError(f"--ray-address takes HOST:PORT (the head's GCS port, 6379 by default) or ray://HOST:PORT, "
                          f"got {value}")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError(f"no Ray cluster answers at {value} ({exc.strerror or exc}); start one with "
                          f"`ray start --head` or check the address") from None
