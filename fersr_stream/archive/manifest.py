"""What a finished file was made from: one JSON manifest per source, ``<outputs' folder>/.fersr-archive/NAME.json``.

It holds the input's size, mtime and sha256, the settings' fingerprint (the resolved config with its source and
output paths blanked, and the fersr version) and each output's path, size, mtime and sha256. A rerun skips a file
whose input, settings and outputs still match. Sizes and mtimes are compared first; a file whose size matches but
whose mtime moved is hashed again (a copy or a ``touch`` with the same bytes still matches), so a rerun over an
unchanged archive reads no video.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
from pathlib import Path

from .. import __version__
from .. import config as cfg

FOLDER = ".fersr-archive"
_CHUNK = 1 << 20


def outputs(plan: cfg.StreamConfig) -> list[str]:
    """The output files of a one-source config, in a fixed order (video, then JSON lines)."""
    return [p for p in (plan.output.video, plan.output.jsonl) if p]


def path(plan: cfg.StreamConfig, name: str) -> Path:
    """Where the manifest of the source ``name`` lives: beside its first output."""
    return Path(outputs(plan)[0]).expanduser().parent / FOLDER / f"{name}.json"


def fingerprint(config: cfg.StreamConfig) -> str:
    """sha256 of the settings that shape the outputs: the resolved config without its source and output paths
    (which differ per file), and the fersr version."""
    blank = dataclasses.replace(config, source=dataclasses.replace(config.source, uri=()),
                                output=dataclasses.replace(config.output, video=None, jsonl=None))
    settings = {"fersr": __version__, "config": cfg.to_dict(blank)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def sha256(file: str | Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe(file: str | Path, digest: str | None = None) -> dict:
    """A file's size, mtime (ns) and sha256 (``digest`` when already known)."""
    st = os.stat(file)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest or sha256(file)}


def record(plan: cfg.StreamConfig, settings: str) -> dict:
    """The manifest of a one-source config whose outputs are in place."""
    return {"fersr": __version__, "settings": settings,
            "input": {"path": str(Path(plan.source.uri[0]).expanduser().resolve()), **describe(plan.source.uri[0])},
            "outputs": [{"path": str(Path(p).expanduser().resolve()), **describe(p)} for p in outputs(plan)]}


def write(target: Path, data: dict) -> None:
    """Write ``data`` to ``target`` atomically (a temporary file beside it, synced, then renamed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{secrets.token_hex(4)}"
    # made as the outputs are (0o666 less the umask), so that whoever may read them may read their record;
    # mkstemp would make it 0o600
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def read(target: Path) -> dict | None:
    """The manifest at ``target``, or None when there is none or it cannot be read."""
    try:
        return json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same(file: str | Path, known: dict) -> bool:
    """Whether ``file`` still has the bytes ``known`` describes (hashed again only when its mtime moved)."""
    try:
        st = os.stat(file)
    except OSError:
        return False
    if st.st_size != known.get("size"):
        return False
    return st.st_mtime_ns == known.get("mtime_ns") or sha256(file) == known.get("sha256")


def finished(plan: cfg.StreamConfig, name: str, settings: str) -> bool:
    """Whether the source ``name`` was annotated with these settings into these outputs, and nothing changed since."""
    known = read(path(plan, name))
    if not known or known.get("settings") != settings:
        return False
    wanted = [str(Path(p).expanduser().resolve()) for p in outputs(plan)]
    if [o.get("path") for o in known.get("outputs", [])] != wanted:
        return False
    return _same(plan.source.uri[0], known.get("input", {})) and \
        all(_same(o["path"], o) for o in known["outputs"])
