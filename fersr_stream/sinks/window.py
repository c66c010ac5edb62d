"""A live preview window (OpenCV highgui). Press q or Esc, or close the window, to stop the run."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys

import cv2

from ..errors import SinkError
from ..types import Frame
from .base import Sink

_QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27 = Esc


def _x_server_answers(display: str) -> bool:
    """Whether an X server takes connections at ``display`` (``:0``, ``unix:0``, ``localhost:10.0``): Qt aborts
    the whole process when it cannot reach the one DISPLAY names (a stale DISPLAY, as ssh sessions leave), so it
    is tried first. A DISPLAY of another form is left to Qt."""
    match = re.fullmatch(r"(?P<host>[^:]*):(?P<number>\d+)(\.\d+)?", display)
    if match is None:
        return True
    host, number = match["host"], int(match["number"])
    if host in ("", "unix"):  # a local server: its socket file, or Linux's abstract socket of the same name
        addresses = [(socket.AF_UNIX, f"/tmp/.X11-unix/X{number}"), (socket.AF_UNIX, f"\0/tmp/.X11-unix/X{number}")]
    else:
        addresses = [(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, 6000 + number))]
    for family, address in addresses:
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(2.0)
            probe.connect(address)
            return True
    return False


def _gui_backend() -> str:
    """OpenCV's GUI backend from its build information ("NONE" for opencv-python-headless)."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return match.group(1) if match else "NONE"


class WindowSink(Sink):
    """Show each frame in a window; :attr:`wants_stop` turns True on q/Esc or when the window is closed.

    The window is created on the first :meth:`write`, in the thread that draws (highgui windows belong to the
    thread that made them).

    Raises:
        SinkError: no display (Linux without DISPLAY or WAYLAND_DISPLAY, or a DISPLAY no X server answers at),
            or OpenCV built without a GUI.
    """

    def __init__(self, title: str = "fersr"):
        display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
        if sys.platform.startswith("linux") and not (display or wayland):
            raise SinkError("--show needs a display (DISPLAY/WAYLAND_DISPLAY is not set); write --output instead")
        if sys.platform.startswith("linux") and display and not wayland and not _x_server_answers(display):
            raise SinkError(f"--show: no X server answers at DISPLAY={display} (a display left from another "
                            f"session?); write --output instead")
        if _gui_backend().upper() == "NONE":
            raise SinkError("--show needs OpenCV with a GUI: pip install opencv-python (not opencv-python-headless)")
        self.title = title
        self.wants_stop = False
        self._opened = False

    def write(self, frame: Frame) -> None:
        """Show ``frame.image`` (RGB) and poll the keyboard for 1 ms."""
        if self.wants_stop:
            return
        if not self._opened:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            self._opened = True
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:  # closed with the window's X button
            self.wants_stop = True
            return
        cv2.imshow(self.title, frame.image[..., ::-1])  # OpenCV shows BGR
        if (cv2.waitKey(1) & 0xFF) in _QUIT_KEYS:
            self.wants_stop = True

    def close(self) -> None:
        if self._opened:
            self._opened = False
            cv2.destroyWindow(self.title)
