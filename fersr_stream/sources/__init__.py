"""Frame sources: cameras, network streams, video files, images and folders of images.

``open_source(uri, config)`` picks one from the uri, in this order:

- ``cam0``, ``cam1``, ``0``: camera by index (Linux /dev/videoN via v4l2, macOS avfoundation, Windows
  DirectShow in the order FFmpeg lists the devices);
- ``/dev/videoN``: that Linux camera device;
- ``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``srt://``: network stream (open/read timeouts; RTSP over
  TCP), reconnected after a loss for up to ``source.reconnect_for`` seconds (see :mod:`fersr_stream.sources.live`);
- an existing folder: its images in natural name order (frame2 before frame10);
- an existing image file (.bmp .jpeg .jpg .png .tif .tiff .webp): one frame;
- any other existing file: video file via PyAV, or via NVIDIA DALI when ``config.decoder`` is ``dali``
  (files only; see :mod:`fersr_stream.sources.dali`).

Cameras and network streams are ``live`` (frames may be dropped to keep up; numbered and timed from 0 at their
first frame, see :mod:`fersr_stream.sources.timeline`); files and images are not.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..config import SourceConfig
from ..errors import ConfigError, SourceError
from .base import Outages, Source, SourceInfo
from .images import IMAGE_EXTENSIONS, ImageSource, is_image_path, read_image
from .live import ReconnectingSource, open_stream
from .pyav import NETWORK_SCHEMES, PyAVSource, open_camera, open_file

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "Outages", "PyAVSource", "ReconnectingSource", "Source", "SourceInfo",
           "open_source", "read_image"]

_CAMERA = re.compile(r"(?:cam)?(\d+)", re.IGNORECASE)
_DEVICE = re.compile(r"/dev/video\d+")
DECODERS = ("pyav", "dali")


def open_source(uri: str, config: SourceConfig = SourceConfig(), device: str = "auto") -> Source:
    """Open the source named by ``uri`` (see the module table); the caller closes it (or uses ``with``).

    Args:
        device: where the DALI decoder runs (auto, cpu, cuda, cuda:N); PyAV always decodes on the CPU.

    Raises:
        SourceError: a one-line reason: missing path, empty folder, not a video or image, no such camera,
            unreachable URL, DALI asked for but absent or given something other than a video file.
        ConfigError: an unknown ``config.decoder``.
    """
    uri = (uri or "").strip()
    if not uri:
        raise SourceError("no source given: use cam0, a camera index, a video file, a URL, an image or a folder")
    if config.decoder not in DECODERS:
        raise ConfigError(f"unknown source.decoder {config.decoder!r}; use one of {', '.join(DECODERS)}")
    if config.decoder == "dali":
        return _open_dali(uri, device)
    if match := _CAMERA.fullmatch(uri):
        return open_camera(int(match.group(1)), uri)
    if _DEVICE.fullmatch(uri):
        return open_camera(None, uri, device=uri)
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in NETWORK_SCHEMES:
        return open_stream(uri, config)
    if scheme:
        raise SourceError(f"unsupported URL scheme {scheme!r} in {uri}; use one of {', '.join(NETWORK_SCHEMES)}")
    path = Path(uri).expanduser()
    if path.is_dir() or (path.is_file() and is_image_path(path)):
        return ImageSource(path, config.fps)
    if path.is_file():
        return open_file(path)
    raise SourceError(f"no such file or folder: {uri}")


def _open_dali(uri: str, device: str) -> Source:
    """A :class:`~fersr_stream.sources.dali.DaliSource` for a video file; anything else is a SourceError."""
    path = Path(uri).expanduser()
    if _CAMERA.fullmatch(uri) or _DEVICE.fullmatch(uri) or "://" in uri:
        what = "cameras or network streams"
    elif path.is_dir():
        what = "folders"
    elif path.is_file() and is_image_path(path):
        what = "images"
    elif not path.is_file():
        raise SourceError(f"no such file: {uri}")
    else:
        from .dali import DaliSource  # lazy: DALI is an optional extra

        return DaliSource(path, device=device)
    raise SourceError(f"source.decoder=dali reads video files only, not {what} ({uri}); use source.decoder=pyav")
