"""Outputs: annotated video (.mp4 .mkv .mov .avi .webm), annotated images, per-frame JSON Lines, a window, and the
run's resolved config.

``open_sink(path, info, output_config)`` picks the file sink from the extension; the window is ``WindowSink()``;
``RunConfigSink(config, path)`` saves the config with the first frame.
"""

from __future__ import annotations

from pathlib import Path

from ..config import OutputConfig
from ..errors import SinkError
from ..sources.base import SourceInfo
from ..sources.images import IMAGE_EXTENSIONS
from .base import Sink, check_writable
from .image import ImageSink
from .jsonl import JsonlSink, frame_record
from .run_config import RunConfigSink
from .video import VIDEO_EXTENSIONS, VideoSink
from .window import WindowSink

__all__ = ["ImageSink", "JsonlSink", "RunConfigSink", "Sink", "VideoSink", "WindowSink", "check_output",
           "check_writable", "frame_record", "open_sink"]


def check_output(path: str | Path) -> Path:
    """Raise :class:`SinkError` unless ``path`` has a known extension and can be written; touches nothing."""
    suffix = Path(path).suffix.lower()
    if suffix not in (*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS, ".jsonl"):
        raise SinkError(f"unknown output extension {suffix or '(none)'!r} for {path}; known: videos "
                        f"{' '.join(VIDEO_EXTENSIONS)}, images {' '.join(IMAGE_EXTENSIONS)} (--output), JSON lines "
                        f".jsonl (--jsonl)")
    return check_writable(path)


def open_sink(path: str | Path, info: SourceInfo, output_config: OutputConfig = OutputConfig()) -> Sink:
    """Open the sink for ``path`` by its extension: video, image, or .jsonl.

    Raises:
        SinkError: an unknown extension (the message lists the known ones), an unwritable path, or an output
            another process is writing.
    """
    suffix = check_output(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return VideoSink(path, info, crf=output_config.crf, preset=output_config.preset, codec=output_config.codec,
                         threads=output_config.threads)
    if suffix in IMAGE_EXTENSIONS:
        return ImageSink(path)
    return JsonlSink(path)
