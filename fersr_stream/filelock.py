"""Exclusive locks on open files that the operating system drops when their holder exits or is killed.

flock on POSIX; on Windows a lock on the file's first byte (msvcrt.locking), which other processes cannot then
read or write, so lock a file of its own rather than one that others read. :func:`acquire` and :func:`release`
hold a lock file of its own that the holder removes when done (a killed holder leaves it, and the next one takes
it over).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path


def acquire(path: Path, wait: bool, waiting=None):
    """The lock file ``path`` (made when missing), open and locked; None when another process holds it and
    ``wait`` is off (``waiting()``, if given, is called once before waiting). Pair it with :func:`release`.

    A holder that releases removes the file; a lock taken on the removed file would lock nothing, so it is taken
    again on the file that the name holds now.

    Raises:
        OSError: the lock file cannot be made.
    """
    while True:
        handle = open(path, "a+b", buffering=0)  # noqa: SIM115 - held until release()
        if not try_lock(handle, wait=False):
            if not wait:
                handle.close()
                return None
            if waiting is not None:
                waiting()
                waiting = None
            try_lock(handle, wait=True)
        if _names(handle, path):
            return handle
        unlock(handle)
        handle.close()


def release(handle, path: Path) -> None:
    """Remove the lock file ``path`` and let go of its lock (``handle``, from :func:`acquire`)."""
    # removed while still locked, so that no one locks this file after us and believes it holds the lock;
    # Windows refuses to remove a file someone has open, and there it stays
    with contextlib.suppress(OSError):
        os.unlink(path)
    unlock(handle)
    handle.close()


def _names(handle, path: Path) -> bool:
    """Whether ``path`` still names the open file ``handle``."""
    try:
        here, there = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def try_lock(handle, wait: bool) -> bool:
    """Lock ``handle``'s file; False when another process holds it and ``wait`` is off."""
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not wait:
                    return False
                time.sleep(0.5)
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def unlock(handle) -> None:
    """Release the lock :func:`try_lock` took on ``handle``."""
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
