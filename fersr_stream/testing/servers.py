"""Live stream servers on 127.0.0.1 for tests: FFmpeg serving a clip over HTTP (MPEG-TS) or RTMP (FLV), and
GStreamer's RTSP server (:mod:`fersr_stream.testing.rtsp_server`), each paced in real time and able to be killed,
paused and started again on the same port.

Debian packages: ``ffmpeg`` for HTTP and RTMP; ``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-good`` and
``python3-gi`` for RTSP (run by the system's ``/usr/bin/python3``). :func:`missing` says what a kind lacks here.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("http", "rtmp", "rtsp")
SYSTEM_PYTHON = "/usr/bin/python3"
_RTSP_SERVER = Path(__file__).with_name("rtsp_server.py")
_LISTEN_WAIT_S = 10.0


def missing(kind: str) -> str | None:
    """Why a ``kind`` server cannot run on this machine (a sentence naming the Debian packages), or None."""
    if kind in ("http", "rtmp"):
        return None if shutil.which("ffmpeg") else "no ffmpeg on PATH (Debian: apt-get install ffmpeg)"
    imports = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    probe = (subprocess.run([SYSTEM_PYTHON, "-c", imports], capture_output=True, check=False)
             if Path(SYSTEM_PYTHON).exists() else None)
    if probe is None or probe.returncode != 0:
        return (f"no GStreamer RTSP server for {SYSTEM_PYTHON} (Debian: apt-get install python3-gi "
                f"gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good)")
    return None


def free_port() -> int:
    """A TCP port nothing listens on now (the system's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    """Whether a socket listens on TCP ``port`` (read from /proc: connecting to look would take the one client
    an ``ffmpeg -listen 1`` server serves)."""
    hex_port = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(row.split()[1].endswith(hex_port) and row.split()[3] == "0A" for row in rows):  # 0A: LISTEN
            return True
    return False


class StreamServer:
    """One server of ``kind`` (http, rtmp, rtsp) streaming ``clip`` (H.264 MP4) in real time on a free port.

    FFmpeg's servers loop the clip and serve one client, then end; the RTSP server starts the clip over for each
    client. Use as a context manager: the server is killed on the way out.
    """

    def __init__(self, kind: str, clip: str | Path):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.clip, self.port = kind, str(clip), free_port()
        self.url = {"http": f"http://127.0.0.1:{self.port}",
                    "rtmp": f"rtmp://127.0.0.1:{self.port}/live/clip",
                    "rtsp": f"rtsp://127.0.0.1:{self.port}/clip"}[kind]
        self.process: subprocess.Popen | None = None

    def _command(self) -> list[str]:
        if self.kind == "rtsp":
            return [SYSTEM_PYTHON, str(_RTSP_SERVER), str(self.port), self.clip]
        muxer = "mpegts" if self.kind == "http" else "flv"
        return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
                "-i", self.clip, "-c", "copy", "-f", muxer, "-listen", "1", self.url]

    def start(self) -> "StreamServer":
        """Start serving, and return once the port listens."""
        self.process = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _LISTEN_WAIT_S
        while not listening(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"the {self.kind} server ended with {self.process.returncode} before listening")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the {self.kind} server did not listen on {self.port} in {_LISTEN_WAIT_S} s")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """End the server at once (its clients see the connection close), and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """Stop sending without closing anything (SIGSTOP): the clients' connections stay open and silent."""
        self.process.send_signal(signal.SIGSTOP)

    def __enter__(self) -> "StreamServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


if __name__ == "__main__":  # serve a clip by hand: python -m fersr_stream.testing.servers KIND CLIP
    with StreamServer(sys.argv[1], sys.argv[2]) as server:
        print(server.url, flush=True)
        server.process.wait()
