"""Exclusive locks on open files that the operating system drops when their holder exits or is killed.

flock on POSIX; on Windows a lock on the file's first byte (msvcrt.locking), which other processes cannot then
read or write, so lock a file of its own rather than one that others read.
"""

from __future__ import annotations

import os
import time


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
