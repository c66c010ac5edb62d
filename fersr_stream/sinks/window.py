"""A live preview window (OpenCV highgui). Press q or Esc, or close the window, to stop the run."""

from __future__ import annotations

import os
import re
import sys

import cv2

from ..errors import SinkError
from ..types import Frame
from .base import Sink

_QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27 = Esc


def _gui_backend() -> str:
    """OpenCV's GUI backend from its build information ("NONE" for opencv-python-headless)."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return match.group(1) if match else "NONE"


class WindowSink(Sink):
    """Show each frame in a window; :attr:`wants_stop` turns True on q/Esc or when the window is closed.

    The window is created on the first :meth:`write`, in the thread that draws (highgui windows belong to the
    thread that made them).

    Raises:
        SinkError: no display (Linux without DISPLAY or WAYLAND_DISPLAY), or OpenCV built without a GUI.
    """

    def __init__(self, title: str = "fersr"):
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SinkError("--show needs a display (DISPLAY/WAYLAND_DISPLAY is not set); write --output instead")
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
