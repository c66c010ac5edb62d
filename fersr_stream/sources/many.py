"""What a run's ``--source`` values name, one source each, and a name for each (the ``{name}`` of output templates).

A value may be a camera, a URL, a video or image file, a folder (of videos: each one a source; of images: one
source of stills), a glob (``'clips/*.mp4'``, quoted so the shell leaves it alone), or a ``.txt`` file listing
sources, one a line (``#`` starts a comment; relative paths are relative to the list's folder).
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ..errors import SourceError
from .images import is_image_path

# suffixes of video files, when a folder is read as several videos (image files are the stills of one source)
VIDEO_SUFFIXES = (".3gp", ".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts", ".ogv",
                  ".ts", ".webm", ".wmv")
CAMERA = re.compile(r"(?:cam)?(\d+)|/dev/video\d+", re.IGNORECASE)
log = logging.getLogger("fersr")


def is_device_or_stream(uri: str) -> bool:
    """Whether ``uri`` names a camera or a network address (opened once the models are ready: their frames come
    whether the pipeline is ready or not)."""
    return bool(CAMERA.fullmatch(uri.strip())) or "://" in uri


def expand(values: Sequence[str]) -> list[str]:
    """Every source the ``values`` name, in order (folders and globs in natural name order).

    Raises:
        SourceError: a glob that matches nothing, or a list file that cannot be read, names no source or names
            itself (directly or through another list).
    """
    out: list[str] = []
    for value in values:
        out += _expand(value.strip())
    return out


def _expand(value: str, lists: tuple[Path, ...] = ()) -> list[str]:
    """The sources ``value`` names; ``lists``: the .txt lists it was read from (a list naming one of them would
    never end)."""
    if not value or is_device_or_stream(value):
        return [value]
    path = Path(value).expanduser()
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file()]
        videos = sorted((p for p in files if p.suffix.lower() in VIDEO_SUFFIXES), key=_natural)
        pictures = sum(is_image_path(p) for p in files)
        if videos and pictures:
            log.warning("%s: %d picture%s skipped: a folder of videos makes each video a source; give the "
                        "pictures a folder of their own", value, pictures, "s" if pictures > 1 else "")
        return [str(p) for p in videos] or [value]  # no videos: a folder of images, one source
    if path.is_file() and path.suffix.lower() == ".txt":
        here = path.resolve()
        if here in lists:
            raise SourceError(f"the list of sources {path} names itself (through {' -> '.join(map(str, lists))})")
        found = [s for line in _lines(path) for s in _expand(_relative(line, path.parent), (*lists, here))]
        if not found:
            raise SourceError(f"the list of sources {path} names no source (only blank lines and # comments)")
        return found
    if not path.exists() and glob.has_magic(value):
        found = sorted(glob.glob(str(path)), key=lambda p: _natural(Path(p)))
        if not found:
            raise SourceError(f"no file matches {value}")
        return [s for match in found for s in _expand(match, lists)]
    return [value]


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # Windows Notepad starts its UTF-8 with a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read the list of sources {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _relative(entry: str, folder: Path) -> str:
    """A list's entry: URLs, cameras and absolute paths as they are, relative paths from the list's folder."""
    if is_device_or_stream(entry) or Path(entry).expanduser().is_absolute():
        return entry
    return str(folder / entry)


def _natural(path: Path) -> list:
    parts = re.split(r"(\d+)", path.name.lower())
    return [int(p) if i % 2 else p for i, p in enumerate(parts)]


def names(uris: Sequence[str]) -> list[str]:
    """A name for each source, unique within the run: a file's stem, a folder's name, ``cam0``, a URL's host and
    path; repeats get ``-2``, ``-3``... (a number no other source is named by: ``a/clip``, ``c/clip-2`` and
    ``b/clip`` are ``clip``, ``clip-2`` and ``clip-3``)."""
    bases = [_name(uri.strip()) for uri in uris]
    taken, seen, out = set(bases), set(), []
    for base in bases:
        name, k = base, 1
        while base in seen and name in taken:  # a repeat: the first free number
            k += 1
            name = f"{base}-{k}"
        seen.add(base)
        taken.add(name)
        out.append(name)
    return out


def _name(uri: str) -> str:
    match = CAMERA.fullmatch(uri)
    if match:
        return f"cam{match.group(1)}" if match.group(1) else Path(uri).name
    if "://" in uri:
        parts = urlsplit(uri)
        path = PurePosixPath(parts.path.rstrip("/"))
        path = path.with_suffix("") if path.suffix and path.stem else path  # live.ts: live, as a file's stem
        raw = f"{parts.hostname or 'stream'}{path if parts.path.strip('/') else ''}".rstrip("/")
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw) or "stream"
    path = Path(uri).expanduser()
    return path.name if path.is_dir() else path.stem
