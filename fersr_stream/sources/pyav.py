"""Video files, cameras and network streams, decoded with PyAV (FFmpeg) one frame at a time.

Frames are always converted to RGB uint8 (see :func:`to_rgb`), whatever the pixel format, upright as players show
them (see :func:`orientation`), in presentation order with the stream's time_base and pts that only go forward;
frames without a pts continue from the previous frame. The first frame is decoded when the source is opened, so an
input of which no frame decodes (a damaged index, say) is a :class:`SourceError` before anything is written.
A packet the decoder refuses is skipped and decoding goes on, as in players; the count is logged when the source
is closed. A file that ends early (truncated or corrupt tail) yields what decodes and logs a warning; a live stream
that fails mid-way raises :class:`StreamLost` (:mod:`fersr_stream.sources.live` reconnects network streams). A live
source's frames are numbered and timed by a :class:`~fersr_stream.sources.timeline.LiveTimeline`: from 0 at its
first frame.
"""

from __future__ import annotations

import itertools
import logging
import math
import mimetypes
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import av
import av.logging
import cv2
import numpy as np

from ..device import spare_cores
from ..errors import SourceError
from ..types import Frame
from .base import Source, SourceInfo
from .timeline import LiveTimeline

log = logging.getLogger("fersr")

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "srt")

# FFmpeg's FLV reader (RTMP) waits its whole analyzeduration (5 s) for streams that may still appear; the video's
# parameters come first, in its sequence header, and a live source's audio is not used: a second is enough.
_RTMP_ANALYZE_US = "1000000"


class StreamLost(SourceError):
    """A live source that failed mid-way: a read failed, or no data came for ``source.read_timeout``; ``reason``
    is the message without the source's name."""

    def __init__(self, label: str, reason: str):
        super().__init__(f"lost {label}: {reason}")
        self.reason = reason


class CannotOpen(SourceError):
    """A network stream that does not open; ``reason`` is the message without the stream's name, ``timed_out``
    whether it was the open timeout."""

    def __init__(self, label: str, reason: str, timed_out: bool = False):
        super().__init__(f"cannot open stream {label}: {reason}")
        self.reason, self.timed_out = reason, timed_out

# A file counts as truncated when its frames end this much before the duration its header announces
# (at least two frame intervals): a margin for streams whose audio outlasts the video by a few packets.
_TRUNCATION_MARGIN_S = 0.5


# FFmpeg's AVColorSpace values that mean BT.601 YUV (swscale's default for "unspecified" too), and AVColorRange's
# full ("JPEG") range; see to_rgb
_BT601 = frozenset({2, 5, 6})  # unspecified, BT470BG, SMPTE170M
_FULL_RANGE = 2


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded frame.

    The commonest decoded format, limited-range BT.601 YUV 4:2:0 of even size, is converted by OpenCV: the same
    matrix as swscale's, at a third of its time (0.45 vs 1.24 ms per 720p frame here); only the chroma is
    upsampled by repetition instead of interpolation (mean difference 1 level, at most 8 at sharp colour edges,
    which the output's own 4:2:0 encoding drops again). Every other format goes through swscale.
    """
    if (frame.format.name == "yuv420p" and frame.colorspace in _BT601 and frame.color_range != _FULL_RANGE
            and frame.width % 2 == 0 and frame.height % 2 == 0):
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


def orientation(frame: av.VideoFrame) -> tuple[int, bool]:
    """How to turn a decoded frame upright, as players show it: (quarter turns counterclockwise, then mirror
    left-right), from the frame's display matrix (phones store video sideways and say so there); (0, False)
    without one. An angle between quarter turns goes to the nearest one.
    """
    for data in frame.side_data:
        if data.type.name == "DISPLAYMATRIX":
            break
    else:
        return 0, False
    # FFmpeg's 3x3 matrix of native int32 (16.16 fixed point) maps a pixel (x, y) to (a x + c y, b x + d y)
    a, b, _, c, d, *_ = (int(v) for v in np.frombuffer(bytes(data), np.int32))
    mirror = a * d - b * c < 0
    if mirror:  # take the mirroring out; what is left is a rotation
        a, c = -a, -c
    return round(math.degrees(math.atan2(-b, a)) / 90) % 4, mirror


def upright(image: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    """(H, W, C) ``image`` turned ``turns`` quarter turns counterclockwise, then mirrored left-right if asked."""
    if not (turns or mirror):
        return image
    image = np.rot90(image, turns)
    return np.ascontiguousarray(image[:, ::-1] if mirror else image)


def _packets(count: int, what: str) -> str:
    """``"1 damaged packet"``, ``"3 damaged packets"``; empty for none."""
    return f"{count} {what} packet{'' if count == 1 else 's'}" if count else ""


def _reason(exc: Exception) -> str:
    """FFmpeg's message without PyAV's errno prefix and file name."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # host[:port] as typed (keeps IPv6 brackets)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class PyAVSource(Source):
    """Frames of the first video stream of an open PyAV container.

    Use :func:`open_file`, :func:`open_camera` or :func:`open_network` rather than this constructor.

    Args:
        container: an input container (owned from now on: closed by :meth:`close`).
        label: how messages name the input (file path, camera, redacted URL).
        live: camera or network stream (no frame count, no audio path, errors raise).
        path: the input file, for the video sink's audio copy; None for live sources.
        read_timeout: seconds a live stream may send no video before it counts as lost (the container's own read
            timeout, which FFmpeg applies per read, must be the same); None: none.
        timeline: numbers and times a live source's frames; one shared by the connections of a reconnecting stream
            (None: a new one, in this stream's time base).

    Attributes:
        damaged: packets the decoder refused so far (skipped).

    Raises:
        SourceError: no video stream, or no frame of it decodes (the container is closed then).
    """

    def __init__(self, container, label: str, live: bool, path: str | None, read_timeout: float | None = None,
                 timeline: LiveTimeline | None = None):
        self._container, self._label, self._live, self._closed = container, label, live, False
        self._read_timeout = read_timeout if live else None
        if not container.streams.video:
            container.close()
            raise SourceError(f"no video stream in {label}")
        stream = self._stream = container.streams.video[0]
        if not live:  # frame + slice threads (for cameras they would add latency), where cores are spare
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = spare_cores()
        # FFmpeg's own guess first: raw H.264 streams announce a made-up average rate of 25
        rate = stream.guessed_rate or stream.average_rate or Fraction(25)
        time_base = stream.time_base or 1 / rate
        # ticks between frames, for pts that are missing and for the end time of the last frame
        self._step = max(1, round(1 / (rate * time_base)))
        self.damaged = 0  # packets the decoder refused, skipped
        self._ended_by: str | None = None  # why a file's packets ended before its end (damaged data)
        self._frames = self._decode()
        try:
            first = next(self._frames, None)
        except StreamLost as exc:
            container.close()
            raise SourceError(f"{label} sent no frame: {exc.reason}") from None
        if first is None:
            container.close()
            why = "; ".join(filter(None, [_packets(self.damaged, "damaged"), self._ended_by]))
            if live:
                raise SourceError(f"{label} sent no frame" + (f" ({why})" if why else ""))
            # over HTTP the file may be whole: a server that ignores byte ranges cuts FFmpeg's reads short
            damaged = ("the file, or its index, is damaged, or the server does not serve byte ranges (which "
                       "FFmpeg needs to read an MP4 whose index is at its end)" if "://" in label else
                       "the file, or its index, is damaged")
            raise SourceError(f"no frame of {label} decodes" + (f" ({why})" if why else "") + f": {damaged}")
        self._turns, self._mirror = orientation(first)
        width, height = (first.height, first.width) if self._turns % 2 else (first.width, first.height)
        self._first = first
        self.timeline = (timeline or LiveTimeline(Fraction(time_base), self._step)) if live else None
        self.info = SourceInfo(width=width, height=height, fps=float(rate),
                               time_base=self.timeline.time_base if live else Fraction(time_base),
                               frame_count=None if live else self._count_frames(float(rate)),
                               live=live, path=path, has_audio=bool(container.streams.audio))

    def _count_frames(self, fps: float) -> int | None:
        """The header's frame count (mp4, mov, avi), else duration x fps (mkv, webm), else None (raw streams)."""
        if self._stream.frames:
            return self._stream.frames
        seconds = self._expected_seconds()
        return round(seconds * fps) if seconds else None

    def _expected_seconds(self) -> float | None:
        """Duration of the video stream announced by the header, in seconds, or None."""
        stream = self._stream
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if self._container.duration is not None:
            return self._container.duration / av.time_base
        return None

    def _decode(self) -> Iterator[av.VideoFrame]:
        """The stream's decoded frames. A packet the decoder refuses is counted in :attr:`damaged` and skipped (the
        frames that refer to it may show artefacts, as in players); a read that fails ends a file there (the reason
        in ``_ended_by``) and a live stream with a :class:`StreamLost`, as does a live stream that sends no video
        for ``read_timeout``."""
        packets = self._container.demux(self._stream)
        while True:
            started = time.monotonic()
            try:
                packet = next(packets, None)
            except (av.FFmpegError, OSError) as exc:
                if self._live:
                    raise self._lost(exc, time.monotonic() - started) from None
                self._ended_by = _reason(exc)
                return
            if self._read_timeout is not None and time.monotonic() - started >= self._read_timeout:
                # FFmpeg's timeout fired, and the demuxer handed over what it still held (RTSP, MPEG-TS): the
                # connection is spent, and a second read would wait a whole timeout again
                raise self._lost(None, time.monotonic() - started)
            if packet is None:
                return
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.damaged += 1
                continue
            yield from frames

    def _lost(self, exc: Exception | None, waited: float) -> StreamLost:
        """A live read that failed after ``waited`` seconds: FFmpeg's timeout (which it reports as "Immediate exit
        requested" or as an input/output error, or not at all) or the reason FFmpeg gives."""
        if self._read_timeout is not None and (waited >= self._read_timeout or isinstance(exc, av.ExitError)):
            return StreamLost(self._label, f"no data for {self._read_timeout:g} s (source.read_timeout)")
        return StreamLost(self._label, f"reading failed ({_reason(exc)})" if exc is not None else "reading failed")

    def __iter__(self) -> Iterator[Frame]:
        time_base, index = self.info.time_base, 0
        first_pts = last_pts = last_end = None
        frames = self._frames if self._first is None else itertools.chain([self._first], self._frames)
        self._first = None
        if self.timeline is not None:
            self.timeline.new_connection()
        for frame in frames:
            if self.timeline is not None:  # a live source: from 0 at its first frame, on across reconnects
                index, pts = self.timeline.place(frame.pts, frame.time_base or self._stream.time_base)
                yield Frame(index=index, image=upright(to_rgb(frame), self._turns, self._mirror), pts=pts,
                            time_base=time_base)
                continue
            pts = frame.pts
            if pts is None:  # raw elementary streams (.h264) carry no timestamps
                pts = 0 if last_pts is None else last_pts + (frame.duration or self._step)
            elif last_pts is not None and pts <= last_pts:
                # AVI with B-frames holds decode-order guesses as pts; step forward, the next ones catch up
                pts = last_pts + 1
            image = upright(to_rgb(frame), self._turns, self._mirror)
            yield Frame(index=index, image=image, pts=pts, time_base=time_base)
            first_pts = pts if first_pts is None else first_pts
            last_pts, last_end = pts, pts + (frame.duration or self._step)
            index += 1
        if self._ended_by is not None:
            log.warning("%s: decoded %d frames, then the file ends in damaged data (%s): it is truncated or "
                        "corrupt; stopping there", self._label, index, self._ended_by)
            return
        if self.info.live or first_pts is None:
            return
        decoded = float((last_end - first_pts) * time_base)
        expected = self._expected_seconds()
        if expected and decoded < expected - max(_TRUNCATION_MARGIN_S, 2 / self.info.fps):
            log.warning("%s: decoded %d frames (%.2f s of the %.2f s the header announces): the file is truncated",
                        self._label, index, decoded, expected)

    def close(self) -> None:
        """Close the input, and tell how many damaged packets were skipped, if any."""
        if not self._closed:
            self._closed = True
            self._container.close()
            if self.damaged:
                log.warning("%s: skipped %s and decoded on, as players do (frames near them may be missing or "
                            "show artefacts)", self._label, _packets(self.damaged, "damaged"))


def open_file(path: str | Path) -> PyAVSource:
    """Open a video file (any container/codec FFmpeg reads).

    Raises:
        SourceError: not a media file FFmpeg can read (or a file cut before its index), or no video stream.
    """
    label = str(path)
    try:
        container = av.open(label)
    except (av.FFmpegError, OSError) as exc:
        if os.path.isfile(label) and os.path.getsize(label) == 0:
            raise SourceError(f"cannot read {label}: the file is empty (0 bytes)") from None
        if (mimetypes.guess_type(label)[0] or "").startswith("video/"):
            raise SourceError(f"cannot read {label}: not a video, or a damaged one (an MP4 cut short before its "
                              f"index, which sits at its end, cannot be read at all) ({_reason(exc)})") from None
        raise SourceError(f"not a video or image file: {label} ({_reason(exc)})") from None
    return PyAVSource(container, label, live=False, path=os.path.abspath(label))


def camera_target(index: int) -> tuple[str, str, dict]:
    """FFmpeg (device, input format, options) for camera ``index`` on this platform."""
    if sys.platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2", {}
    if sys.platform == "darwin":
        # avfoundation's default rate (29.97) is refused by many webcams; 30 is the common native rate
        return str(index), "avfoundation", {"framerate": "30"}
    if sys.platform == "win32":
        # DirectShow opens cameras by name: the index counts in the order FFmpeg lists them
        names = dshow_cameras()
        if index >= len(names):
            listed = ", ".join(f"{i} = {name}" for i, name in enumerate(names)) or "none"
            raise SourceError(f"no camera {index}: DirectShow lists {listed}")
        return f"video={names[index]}", "dshow", {}
    raise SourceError(f"camera {index}: opening cameras by index is supported on Linux, macOS and Windows only; "
                      "give a video file or an rtsp/http URL")


def dshow_cameras() -> list[str]:
    """The DirectShow video devices (Windows), in FFmpeg's order: what ``-f dshow -list_devices true`` prints.

    Raises:
        SourceError: this FFmpeg has no DirectShow input.
    """
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)  # the list comes as INFO messages
    try:
        with av.logging.Capture() as logs:
            try:
                av.open("dummy", format="dshow", options={"list_devices": "true"})
            except ValueError:
                raise SourceError("cannot list cameras: this FFmpeg (PyAV's) has no DirectShow input") from None
            except (av.FFmpegError, OSError):
                pass  # listing ends in an error by design ("Immediate exit requested")
    finally:
        av.logging.set_level(previous)
    return dshow_video_devices(message for _, _, message in logs)


_DSHOW_DEVICE = re.compile(r'"(?P<name>[^"]+)"(?:\s+\((?P<kinds>[^)]*)\))?')


def dshow_video_devices(messages) -> list[str]:
    """Video device names in FFmpeg's dshow listing, in order. FFmpeg 4.4 and later tag each device
    (``"Integrated Camera" (video)``); older ones list them under a "DirectShow video devices" heading.
    "Alternative name" lines and audio devices are skipped."""
    names, heading = [], None
    for message in messages:
        text = message.strip()
        if text.startswith("DirectShow video devices"):
            heading = "video"
        elif text.startswith("DirectShow audio devices"):
            heading = "audio"
        elif match := _DSHOW_DEVICE.fullmatch(text):
            kinds = match["kinds"]
            if ("video" in kinds) if kinds is not None else heading == "video":
                names.append(match["name"])
    return names


def open_camera(index: int | None, uri: str, device: str | None = None) -> PyAVSource:
    """Open camera ``index`` (or the Linux ``device`` path such as /dev/video2); ``uri`` is what the user typed.

    Raises:
        SourceError: no such camera, or the camera cannot be opened (busy, no permission).
    """
    if device is not None:
        target, fmt, options = device, "v4l2", {}
    else:
        target, fmt, options = camera_target(index)
    if fmt == "v4l2" and not os.path.exists(target):
        also = f"; for the file {uri} here, give ./{uri}" if os.path.isfile(uri) else ""
        raise SourceError(f"no camera at {target} ({uri}){also}")
    try:
        container = av.open(target, format=fmt, options=options)
    except (av.FFmpegError, OSError, ValueError) as exc:  # ValueError: FFmpeg built without this device format
        raise SourceError(f"cannot open camera {target} ({uri}): {_reason(exc)}") from None
    return PyAVSource(container, f"camera {target}", live=True, path=None)


def _interruptible(opening):
    """``opening()`` run in a thread of its own while this one waits in short slices: FFmpeg's open holds the
    thread it runs in until it connects or times out (``source.open_timeout``), so a Ctrl-C in the main thread
    would wait that long; waiting here, it stops the run at once (the opening thread is left to time out)."""
    done: dict = {}

    def target():
        try:
            done["container"] = opening()
        except BaseException as exc:  # handed to the waiting thread, which raises it
            done["error"] = exc

    thread = threading.Thread(target=target, name="fersr-open", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    if "error" in done:
        raise done["error"]
    return done["container"]


def open_network(url: str, open_timeout: float, read_timeout: float,
                 timeline: LiveTimeline | None = None) -> PyAVSource:
    """Open one connection to an RTSP/RTMP/HTTP(S)/UDP/SRT stream, RTSP over TCP (no lost UDP packets), with open
    and read timeouts in s.

    A stream is live (frames may be dropped to keep up), except an HTTP(S) address of a whole file, whose length
    the container announces: that is read like a local file, every frame. A live stream that fails mid-way raises
    :class:`StreamLost`; :func:`fersr_stream.sources.live.open_stream` reconnects.

    Args:
        timeline: the frame numbers and times to go on with (a reconnect), None to start from 0.

    Raises:
        SourceError: unreachable, refused, timed out, not a video stream, or a protocol this FFmpeg lacks.
    """
    label = redact(url)
    scheme = url.split("://", 1)[0].lower()
    options = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}
    if scheme.startswith("rtmp"):
        options["analyzeduration"] = _RTMP_ANALYZE_US
    started = time.monotonic()
    try:
        container = _interruptible(lambda: av.open(url, options=options, timeout=(open_timeout, read_timeout)))
    except av.ProtocolNotFoundError:
        raise CannotOpen(label, f"this FFmpeg (PyAV's) cannot read {scheme}:// streams") from None
    except (av.FFmpegError, OSError) as exc:
        # FFmpeg reports its timeout as an interrupt or as bad data; the clock tells which it was
        timed_out = time.monotonic() - started >= open_timeout
        reason = f"no answer within {open_timeout:g} s (source.open_timeout)" if timed_out else _reason(exc)
        if isinstance(exc, av.InvalidDataError) and not timed_out:
            reason += " (what answered there sent no video stream: check the address, port and path)"
        raise CannotOpen(label, reason, timed_out) from None
    whole_file = scheme.startswith("http") and (container.duration or 0) > 0
    return PyAVSource(container, label, live=not whole_file, path=None, read_timeout=read_timeout,
                      timeline=None if whole_file else timeline)
