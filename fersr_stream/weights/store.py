"""The weights cache: where files live, and how they are downloaded, verified and imported.

Nothing here runs on import or in a constructor: the network is touched only by :func:`download`
(``fersr-models download NAME``) and by :func:`ensure` when its caller asks it to download (the stream and the
study do, once, before they build anything; the loaders never do).

Layout::

    <cache>/weights/<name>/<filename>          the file, under its upstream file name
    <cache>/weights/<name>/<filename>.part     a download in progress, resumed with an HTTP Range request
    <cache>/weights/<name>/<filename>.sha256   stamp "sha256 size mtime_ns": the file as it was when it last
                                               matched its registry hash, so later runs need not rehash it
    <cache>/weights/<name>/<filename>.lock     held while a process downloads or imports the file, so that two
                                               processes never write the same ``.part`` file (removed after)

``<cache>`` is ``$FERSR_HOME`` if set, else ``$XDG_CACHE_HOME/fersr``, else ``~/.cache/fersr``.

Environment:
    FERSR_HOME: the cache folder (above).
    FERSR_OFFLINE: ``1`` (or true/yes/on) forbids network access; a missing file is then an error saying how to
        get it.
    FERSR_WEIGHTS_MIRROR: a base URL (``https://``, ``http://`` or ``file://``) used instead of the registry URLs:
        each file is fetched as ``$FERSR_WEIGHTS_MIRROR/<filename>``, e.g. from an internal mirror or from a local
        folder (``FERSR_WEIGHTS_MIRROR=file:///data/weights``). Sizes and hashes are checked as usual.

A download streams into the ``.part`` file, hashing while it writes, and checks size and sha256 before an
``os.replace`` puts it in place, so the final path never holds a partial or unchecked file. A second process that
wants the same file waits for the first one's lock, then finds the file in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import sys
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from .. import __version__, filelock
from ..errors import WeightsError
from . import registry
from .registry import WeightSpec

TIMEOUT_S = 30.0
"""Default seconds to wait for a connection or for the next bytes of a response."""

_CHUNK = 1 << 20  # bytes hashed at a time; a network read returns at most this many
# Values of ``--...-weights`` that can only be meant as files (so a missing one is "not found", not a typo'd name).
_FILE_SUFFIXES = (".pth", ".pt", ".onnx", ".safetensors", ".ckpt", ".bin", ".hdf5", ".h5")
# A dropped connection is resumed at most this many times per URL in one call, and only after an attempt that
# made progress, so a server that always fails at the same byte cannot loop forever.
_RESUMES = 5
_USER_AGENT = f"fersr/{__version__}"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def cache_dir() -> Path:
    """The cache folder: ``$FERSR_HOME``, else ``$XDG_CACHE_HOME/fersr``, else ``~/.cache/fersr`` (not created)."""
    home = os.environ.get("FERSR_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fersr"


def path(name: str) -> Path:
    """Where the registry file ``name`` lives in the cache, whether or not it is there yet."""
    spec = registry.get(name)
    return cache_dir() / "weights" / spec.name / spec.filename


def cached_names() -> list[str]:
    """Registry names whose file is present in the cache (unchecked), in registry order."""
    return [name for name in registry.REGISTRY if path(name).exists()]


def offline() -> bool:
    """True when ``FERSR_OFFLINE`` forbids network access."""
    return os.environ.get("FERSR_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_file(file: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ensure(name_or_path: str, download: bool = False, quiet: bool = False, arch: str | None = None) -> Path:
    """The local file for a registry name or a path; a registry file is downloaded only when ``download`` is set.

    Args:
        name_or_path: a registry name such as ``gfpgan.v1_4`` (names win over same-named files in the working
            folder), or an existing file (returned as is, unchecked).
        download: fetch a registry file that is not cached (never when ``FERSR_OFFLINE`` is set). Loaders leave
            it off; the commands that know a run needs the file turn it on before building anything.
        quiet: no progress bar or download message.
        arch: the architecture the caller loads (the part of registry names before the dot, e.g. ``yunet``): a
            registry name of another architecture is refused before anything is fetched.

    Returns:
        The file's path. A cached file is checked by size, and by sha256 once per (size, mtime).

    Raises:
        WeightsError: neither a file nor a registry name; a registry name of another architecture; a cached file
            that fails its check; a file that is not cached and may not be, or could not be, downloaded. The
            message says which command fixes it.
    """
    if name_or_path not in registry.REGISTRY:
        return _given_file(name_or_path, arch)
    spec = registry.get(name_or_path)
    if arch is not None and registry.arch(spec.name) != arch:
        same = [name for name in registry.REGISTRY if registry.arch(name) == arch]
        raise WeightsError(f"{spec.name} holds {registry.arch(spec.name)} weights, not {arch}; give "
                           f"{' or '.join(same)}, or a file")
    dest = path(spec.name)
    if dest.exists():
        problem = _problem(dest, spec, trust_stamp=True)
        if problem:
            raise WeightsError(f"{problem}; {_fix(spec, dest, again=True)}")
        return dest
    if not download:
        raise WeightsError(f"weights {spec.name} are not cached; {_fix(spec, dest)}")
    return _download(spec, dest, force=False, quiet=quiet, urls=None, timeout=TIMEOUT_S)


def _given_file(name_or_path: str, arch: str | None) -> Path:
    """``name_or_path`` as an existing file, or the WeightsError that says what it is instead."""
    given = Path(name_or_path).expanduser()
    if given.is_file():
        return given
    if given.exists():
        raise WeightsError(f"{name_or_path} is a folder, not a weights file")
    if len(given.parts) > 1 or given.suffix.lower() in _FILE_SUFFIXES:
        raise WeightsError(f"weights file not found: {name_or_path}")
    near = registry.hint(name_or_path, arch)
    raise WeightsError(f"no such weights file or registry name: {name_or_path}; {near}")


def download(name: str, force: bool = False, quiet: bool = False, urls: tuple[str, ...] | None = None,
             timeout: float = TIMEOUT_S) -> Path:
    """Fetch the registry file ``name`` into the cache unless a good copy is there already.

    Args:
        name: registry name.
        force: download again even if a good copy is cached, and do not resume an earlier ``.part``.
        quiet: no progress bar (there is none when stderr is not a terminal either).
        urls: URLs to try instead of ``$FERSR_WEIGHTS_MIRROR`` or the registry's (tests, ad-hoc mirrors).
        timeout: seconds to wait for a connection or for the next bytes.

    Returns:
        The cached file's path.

    Raises:
        WeightsError: offline, every URL failed, or the bytes did not match the registry (the file is deleted).
    """
    spec = registry.get(name)
    dest = path(spec.name)
    if not force and dest.exists() and _problem(dest, spec, trust_stamp=True) is None:
        return dest
    return _download(spec, dest, force=force, quiet=quiet, urls=urls, timeout=timeout)


def verify(name: str) -> bool:
    """Rehash the cached file ``name`` against the registry (ignoring the stamp, then renewing it).

    Returns:
        True when the file matches, False when it is not cached.

    Raises:
        WeightsError: the cached file has the wrong size or hash.
    """
    spec = registry.get(name)
    dest = path(spec.name)
    if not dest.exists():
        return False
    problem = _problem(dest, spec, trust_stamp=False)
    if problem:
        raise WeightsError(f"{problem}; run `fersr-models download {spec.name} --force`")
    return True


def import_file(src: str | os.PathLike, name: str) -> Path:
    """Copy a file fetched by hand into the cache as ``name``, if its size and sha256 match the registry.

    The bytes are hashed while they are copied to a temporary file beside the final path, which is put in place
    only when the hash matches; on a mismatch the temporary file is removed and nothing is imported.

    Returns:
        The cached file's path.

    Raises:
        WeightsError: ``src`` is missing, or its size or hash differs from the registry's.
    """
    spec = registry.get(name)
    src = Path(src).expanduser()
    if not src.is_file():
        raise WeightsError(f"no such file to import: {src}")
    size = src.stat().st_size
    if size != spec.size:
        raise WeightsError(f"{src} has {size} bytes but {spec.name} has {spec.size}; "
                           f"is it the file from {spec.urls[0]}? nothing was imported{_OWN_FILE}")
    dest = path(spec.name)
    tmp = dest.with_name(dest.name + ".import")
    digest = hashlib.sha256()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _locked(dest, spec, quiet=True):
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    digest.update(chunk)
                    fout.write(chunk)
                os.fsync(fout.fileno())
            if digest.hexdigest() != spec.sha256:
                tmp.unlink()
                raise WeightsError(f"{src} has sha256 {digest.hexdigest()[:12]}..., {spec.name} has "
                                   f"{spec.sha256[:12]}...; nothing was imported{_OWN_FILE}")
            os.replace(tmp, dest)
            _write_stamp(dest, spec)
            # A download of this name that was interrupted earlier is now moot.
            dest.with_name(dest.name + ".part").unlink(missing_ok=True)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"cannot write {dest}: {e.strerror or e}; set FERSR_HOME to a writable folder") from None
    return dest


# Said when a file is refused as a registry entry: a checkpoint of one's own is used by its path instead.
_OWN_FILE = (" (a checkpoint of your own needs no import: give its path where a name would go, e.g. "
             "--enhancer-weights FILE or --detector-weights FILE)")


def _fix(spec: WeightSpec, dest: Path, again: bool = False, tried: bool = False) -> str:
    """The two ways to get a missing (or, with ``again``, a bad) file, and where it is expected; after a download
    that failed (``tried``) only the second: fetching it by hand."""
    by_hand = (f"fetch {spec.urls[0]} by hand and run `fersr-models import FILE --as {spec.name}` "
               f"(expected at {dest})")
    if tried:
        return by_hand
    get = f"run `fersr-models download {spec.name}{' --force' if again else ''}`"
    if offline():
        get = f"unset FERSR_OFFLINE and {get}"
    return f"{get}, or {by_hand}"


def _problem(file: Path, spec: WeightSpec, trust_stamp: bool) -> str | None:
    """Why ``file`` is not the registry's ``spec`` file, or None when it is (renewing the stamp after a rehash)."""
    size = file.stat().st_size
    if size != spec.size:
        return f"{file} has {size} bytes but {spec.name} has {spec.size}"
    if trust_stamp and _stamp_ok(file, spec):
        return None
    digest = sha256_file(file)
    if digest != spec.sha256:
        return f"{file} has sha256 {digest[:12]}..., {spec.name} has {spec.sha256[:12]}..."
    _write_stamp(file, spec)
    return None


def _stamp_path(file: Path) -> Path:
    return file.with_name(file.name + ".sha256")


def _stamp_ok(file: Path, spec: WeightSpec) -> bool:
    """True when the stamp records the registry hash for the file's current size and mtime."""
    st = file.stat()
    try:
        recorded = _stamp_path(file).read_text().split()
    except OSError:
        return False
    return recorded == [spec.sha256, str(st.st_size), str(st.st_mtime_ns)]


def _write_stamp(file: Path, spec: WeightSpec) -> None:
    """Remember that ``file``, as it is now, matches the registry hash."""
    st = file.stat()
    try:
        _stamp_path(file).write_text(f"{spec.sha256} {st.st_size} {st.st_mtime_ns}\n")
    except OSError:
        # A read-only shared cache still works; it is only rehashed on every run.
        pass


def _sources(spec: WeightSpec, urls: tuple[str, ...] | None) -> tuple[str, ...]:
    """The URLs to try in turn: ``urls``, else the mirror's, else the registry's."""
    if urls:
        return tuple(urls)
    mirror = os.environ.get("FERSR_WEIGHTS_MIRROR", "").strip()
    if not mirror:
        return spec.urls
    if "://" not in mirror:
        raise WeightsError(f"FERSR_WEIGHTS_MIRROR must be a URL such as https://host/path or file:///folder, "
                           f"got {mirror!r}")
    names = dict.fromkeys(url.rsplit("/", 1)[-1] for url in spec.urls)
    return tuple(f"{mirror.rstrip('/')}/{filename}" for filename in names)


def _download(spec: WeightSpec, dest: Path, force: bool, quiet: bool, urls: tuple[str, ...] | None,
              timeout: float) -> Path:
    """Try each URL in turn; put the checked file at ``dest`` or raise one WeightsError naming every failure."""
    if offline():
        again = dest.exists()
        state = "cannot be downloaded again" if again else "are not cached"
        raise WeightsError(f"weights {spec.name} {state} and FERSR_OFFLINE is set; {_fix(spec, dest, again)}")
    sources = _sources(spec, urls)
    failures = []
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _locked(dest, spec, quiet):
            if not force and dest.exists() and _problem(dest, spec, trust_stamp=True) is None:
                return dest  # another process fetched it while this one waited for the lock
            part = _Part(dest.with_name(dest.name + ".part"), fresh=force)
            if not quiet:
                print(f"fersr: downloading {spec.name} ({spec.size / 1e6:.1f} MB, {spec.licence}) to {dest}",
                      file=sys.stderr)
            for url in sources:
                failure = _fetch(url, part, spec, quiet, timeout)
                if failure is None:
                    os.replace(part.path, dest)
                    _write_stamp(dest, spec)
                    return dest
                failures.append(f"{url}: {failure}")
    except OSError as e:
        # Network errors are turned into _NetworkError where they arise; what is left is the local disk.
        raise WeightsError(f"cannot write {dest}: {e.strerror or e}; set FERSR_HOME to a writable folder") from None
    mirror = os.environ.get("FERSR_WEIGHTS_MIRROR", "").strip()
    where = f"check the mirror FERSR_WEIGHTS_MIRROR={mirror}, or unset it; " if mirror and not urls else ""
    raise WeightsError(f"could not download {spec.name} ({'; '.join(failures)}); {where}"
                       f"{_fix(spec, dest, tried=True)}")


@contextlib.contextmanager
def _locked(dest: Path, spec: WeightSpec, quiet: bool):
    """Hold ``dest``'s lock file (waiting, with a message, while another process holds it).

    The operating system drops the lock when its holder exits, so a killed download never leaves it held; the
    lock file is removed when done.
    """
    def waiting():
        if not quiet:
            print(f"fersr: waiting for another process that is fetching {spec.name}", file=sys.stderr)

    lock = dest.with_name(dest.name + ".lock")
    handle = filelock.acquire(lock, wait=True, waiting=waiting)
    try:
        yield
    finally:
        filelock.release(handle, lock)


class _NetworkError(Exception):
    """A transfer that failed on the way (refused, timed out, cut short); the ``.part`` file is kept."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.status = status


class _BadContent(Exception):
    """A server that sends something other than the registry file; the ``.part`` file is deleted."""


class _Part:
    """A download's ``.part`` file and the running sha256 of the bytes it holds.

    Attributes:
        path: the ``.part`` file.
        size: bytes written so far.
        digest: sha256 of those bytes, updated as they are written.
    """

    def __init__(self, file: Path, fresh: bool):
        self.path = file
        self.size = 0
        self.digest = hashlib.sha256()
        if fresh:
            file.unlink(missing_ok=True)
        elif file.exists():
            # Resuming: hash what an earlier attempt left, so the final hash covers the whole file.
            with open(file, "rb") as f:
                while chunk := f.read(_CHUNK):
                    self.digest.update(chunk)
                    self.size += len(chunk)

    def restart(self) -> None:
        """Empty the file and the hash."""
        self.path.write_bytes(b"")
        self.size = 0
        self.digest = hashlib.sha256()

    def delete(self) -> None:
        """Remove the file (the next attempt starts from zero)."""
        self.path.unlink(missing_ok=True)
        self.size = 0
        self.digest = hashlib.sha256()


def _fetch(url: str, part: _Part, spec: WeightSpec, quiet: bool, timeout: float) -> str | None:
    """Complete ``part`` from ``url`` and check its hash; None on success, else why it failed."""
    resumes = 0
    while True:
        before = part.size
        try:
            _transfer(url, part, spec, quiet, timeout)
        except _NetworkError as e:
            if part.size > before and resumes < _RESUMES:
                resumes += 1
                continue
            return f"{e}" + (f" after {part.size} of {spec.size} bytes, kept for resuming" if part.size else "")
        except _BadContent as e:
            part.delete()
            return f"{e}; nothing kept"
        if part.digest.hexdigest() != spec.sha256:
            got = part.digest.hexdigest()
            part.delete()
            return f"sha256 {got[:12]}... does not match {spec.sha256[:12]}...; the file was deleted"
        return None


def _open(url: str, offset: int, timeout: float):
    """The response to a GET of ``url``, asking for bytes from ``offset`` on when it is not 0."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as e:
        raise _NetworkError(f"HTTP {e.code} {e.reason}", status=e.code) from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise _NetworkError(_reason(e)) from None


def _reason(error: BaseException) -> str:
    """A short text for a network exception (URLError wraps the socket error that says what happened)."""
    if isinstance(error, URLError):
        inner = error.reason
        return _reason(inner) if isinstance(inner, BaseException) else str(inner)
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


def _transfer(url: str, part: _Part, spec: WeightSpec, quiet: bool, timeout: float) -> None:
    """One GET that appends to ``part``: resumed when the server honours the Range request (206), else restarted.

    Raises:
        _NetworkError: the connection failed or closed before ``spec.size`` bytes.
        _BadContent: the server announced or sent a different number of bytes.
    """
    if part.size >= spec.size:
        part.restart()
    try:
        response = _open(url, part.size, timeout)
    except _NetworkError as e:
        if e.status != 416:
            raise
        # Range not satisfiable: what we hold is not a prefix of this file.
        part.restart()
        response = _open(url, 0, timeout)
    with response:
        status = getattr(response, "status", None)  # None for file:// URLs
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if not match or int(match.group(1)) != part.size:
                raise _BadContent(f"answered a request for bytes {part.size}- with "
                                  f"{response.headers.get('Content-Range')!r}")
            total = None if match.group(3) == "*" else int(match.group(3))
        else:
            # The whole file again: the server ignores Range (or we asked for none).
            if part.size:
                part.restart()
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and total != spec.size:
            raise _BadContent(f"serves {total} bytes, expected {spec.size}")
        bar = tqdm(total=spec.size, initial=part.size, unit="B", unit_scale=True, unit_divisor=1000,
                   desc=spec.name, disable=quiet or not sys.stderr.isatty())
        with bar, open(part.path, "ab") as f:
            while True:
                try:
                    # read1: whatever one read of the socket brings, so a stall loses nothing already received
                    chunk = response.read1(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _NetworkError(_reason(e)) from None
                if not chunk:
                    break
                if part.size + len(chunk) > spec.size:
                    raise _BadContent(f"sent more than the expected {spec.size} bytes")
                f.write(chunk)
                part.digest.update(chunk)
                part.size += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    if part.size < spec.size:
        raise _NetworkError("connection closed early")
