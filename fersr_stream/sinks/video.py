"""Annotated video out: H.264 (VP9 for .webm) yuv420p via PyAV, with the input's timing and a copy of its audio.

H.264 is encoded on the GPU (NVENC) when asked for and available, else with libx264; see :func:`resolve_codec`.
The file is written so that a run killed at any moment (kill -9, a power cut, a full disk) leaves a video that
plays up to about its last second; see :data:`CONTAINER_OPTIONS`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..device import spare_cores
from ..errors import SinkError
from ..sources.base import SourceInfo
from ..types import Frame
from ..words import counted
from .base import Sink, check_writable
from .durable import OutputFile
from .lock import OutputLock

log = logging.getLogger("fersr")

VIDEO_EXTENSIONS = (".avi", ".mkv", ".mov", ".mp4", ".webm")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
NVENC = "h264_nvenc"
# encoder -> highest crf it accepts (NVENC's constant-quality level cq has the same 0..51 scale)
_CRF_MAX = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, NVENC: 51}
# x264 preset -> the NVENC preset of about the same speed/quality trade (p1 fastest .. p7 best)
_NVENC_PRESETS = {"ultrafast": "p1", "superfast": "p1", "veryfast": "p2", "faster": "p3", "fast": "p3",
                  "medium": "p4", "slow": "p5", "slower": "p6", "veryslow": "p7", "placebo": "p7"}

KEYFRAME_EVERY_S = 1.0
"""Seconds between keyframes, and so the length of an MP4 fragment or a Matroska cluster: about what a killed run
loses at the end of its video, besides the few frames inside the encoder."""

# FFmpeg hands each packet to the file at once: its 32 KiB write buffer would hold back the first seconds of a
# small video, and all of it when the process is killed
_FLUSH = {"flush_packets": "1"}
# delay_moov rather than empty_moov: the header waits for the first fragment, and so knows where the streams start
# (B-frames' delay, AAC's priming); with an empty one the whole timeline would start late by the B-frames' delay
_FRAGMENTED_MP4 = {**_FLUSH, "movflags": "frag_keyframe+delay_moov+default_base_moof"}
_SHORT_CLUSTERS = {**_FLUSH, "cluster_time_limit": str(round(1000 * KEYFRAME_EVERY_S))}
CONTAINER_OPTIONS = {
    # a header, then one fragment a keyframe, each with its own index: a plain MP4/MOV keeps its only index at
    # the end, and a file cut before it (a kill, a power cut) does not play at all
    ".mp4": _FRAGMENTED_MP4,
    ".mov": _FRAGMENTED_MP4,
    # Matroska's muxer holds a cluster in memory until it closes it (after 5 s by default); a killed file lacks
    # only its cue index at the end and plays without it (seeking scans)
    ".mkv": _SHORT_CLUSTERS,
    ".webm": _SHORT_CLUSTERS,
    # AVI's index comes at the end too, but players read a file without it chunk by chunk (VLC offers to fix it)
    ".avi": _FLUSH,
}
"""FFmpeg muxer options per extension, so that a killed run's video plays up to about its last second."""


@functools.cache
def nvenc_opens(width: int, height: int) -> bool:
    """Whether this FFmpeg build has h264_nvenc and it opens for ``width`` x ``height`` frames (probed once per size).

    NVENC needs an NVIDIA GPU and driver at run time, and has minimum and maximum frame sizes, so being in
    ``av.codecs_available`` is not enough: only opening an encoder tells.
    """
    if NVENC not in av.codecs_available:
        return False
    context = av.CodecContext.create(NVENC, "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = Fraction(1, 25)
    try:
        context.open()
    except (av.FFmpegError, OSError, ValueError):  # FFmpeg reports a missing driver as EPERM, bad sizes as EINVAL
        return False
    return True  # the context (and its GPU session) is freed with the object


def resolve_codec(codec: str, width: int, height: int) -> str:
    """The encoder for ``codec`` at this output size: ``auto`` = h264_nvenc when it opens, else libx264.

    An explicit h264_nvenc that does not open also falls back to libx264, with a warning on the ``fersr``
    logger (for ``auto`` the notice is at info level). Other names are returned as they are.
    """
    if codec not in ("auto", NVENC):
        return codec
    if nvenc_opens(width, height):
        return NVENC
    level = logging.INFO if codec == "auto" else logging.WARNING
    log.log(level, "h264_nvenc does not open here for %dx%d video (no NVIDIA GPU or driver, or a size NVENC "
            "refuses): encoding with libx264", width, height)
    return "libx264"


def encoder_threads(threads: int) -> int:
    """Threads for a CPU encoder: ``threads`` when > 0, else :func:`fersr_stream.device.spare_cores`."""
    if threads < 0:
        raise SinkError(f"output.threads must be >= 0 (0 = auto), got {threads}")
    return threads or spare_cores()


def _encoder_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    """FFmpeg options for a constant-quality encode; ``preset`` (an x264 name) applies to x264, x265 and NVENC."""
    if codec not in _CRF_MAX:
        raise SinkError(f"unsupported video codec {codec!r}; use one of auto, {', '.join(_CRF_MAX)}")
    if codec not in av.codecs_available:
        raise SinkError(f"video codec {codec} is not available in this FFmpeg build")
    if not 0 <= crf <= _CRF_MAX[codec]:
        raise SinkError(f"output.crf {crf} out of range for {codec} (0..{_CRF_MAX[codec]})")
    if codec == "libvpx-vp9":
        # b=0 makes crf a pure quality target; realtime + cpu-used 8 keeps VP9 near x264-veryfast speed
        return {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    if preset not in X264_PRESETS:
        raise SinkError(f"unknown preset {preset!r}; use one of {', '.join(X264_PRESETS)}")
    if codec == NVENC:
        # variable bitrate with no bitrate cap and a cq target is NVENC's constant-quality mode; cq 0 would
        # mean "encoder's choice", so crf 0 asks for the best level, 1
        return {"rc": "vbr", "cq": str(max(1, crf)), "b": "0", "preset": _NVENC_PRESETS[preset], "tune": "hq"}
    return {"crf": str(crf), "preset": preset}


class VideoSink(Sink):
    """Encode annotated frames to a video file that plays everywhere.

    - Codec: ``codec`` (libx264 by default, libx265, libvpx-vp9, h264_nvenc, or auto = h264_nvenc when it opens
      else libx264; see :func:`resolve_codec`) in yuv420p; .webm always uses libvpx-vp9.
    - Size: the source's size padded to even width and height by repeating the last column/row (yuv420p halves
      the chroma both ways, so H.264 needs even sizes; padding keeps box coordinates valid). A frame of another
      size (folders of mixed images) is scaled to fit and centred on black.
    - Timing: each frame keeps its pts and the output stream's time base is the input's, so variable frame timing
      survives; a live source's timeline is shifted to start at 0; a frame without pts follows the previous one
      by one frame interval. AVI has no timestamps: there the frames are simply consecutive at ``info.fps``.
    - Audio: when ``info.path`` has an audio stream the container can hold, its packets are copied, not
      re-encoded, as the video advances, and cut at the written video's end on :meth:`close`, so a partial run
      has matching audio (to within one audio packet, about 20-60 ms). Audio the container cannot hold (AAC in
      WebM) is skipped with a warning.

    - Survival: keyframes every :data:`KEYFRAME_EVERY_S`, packets written at once, MP4/MOV fragmented and
      Matroska in short clusters (:data:`CONTAINER_OPTIONS`), the file synced to disk about once a second: a run
      killed at any moment leaves a video that plays up to about its last second. A write that fails (a full
      disk) is a :class:`SinkError`, with the file cut back to its last whole fragment.

    :meth:`close` flushes the encoder and finishes the container (the index for seeking). No file is created, and
    none replaced, before the first packet; another process writing the same file is refused on construction.

    Args:
        path: output file, one of :data:`VIDEO_EXTENSIONS`.
        info: the source's info (size, fps, time base, input path for the audio).
        crf: constant-rate-factor quality (lower = better; x264/x265 0-51, VP9 0-63).
        preset: x264/x265 speed preset (mapped to the NVENC preset p1-p7 of about the same speed).
        codec: auto, libx264, libx265, libvpx-vp9 or h264_nvenc (.webm always uses libvpx-vp9).
        threads: CPU encoder threads, 0 = auto (see :func:`encoder_threads`); NVENC ignores it.

    Attributes:
        codec: the encoder in use (after ``auto`` and the NVENC fallback are resolved).

    Raises:
        SinkError: before any work, for an unwritable path, an output another process is writing, an unknown
            extension, codec, preset or crf; on :meth:`write` and :meth:`close`, for a write the disk refused.
    """

    def __init__(self, path: str | Path, info: SourceInfo, crf: int = 23, preset: str = "veryfast",
                 codec: str = "libx264", threads: int = 0):
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in VIDEO_EXTENSIONS:
            raise SinkError(f"not a video output: {path}; use one of {' '.join(VIDEO_EXTENSIONS)}")
        check_writable(path)
        self._size = (info.width + info.width % 2, info.height + info.height % 2)
        # from_numpy_buffer wraps the I420 array (kept alive while the encoder holds it) rather than copying it with
        # the GIL held, as from_ndarray does: 0.006 ms against 0.26 ms a 720p frame here. PyAV (18) takes the
        # height to be rows // 6 * 4 there, which is right only for heights that are multiples of 4; for the
        # others a frame 2 rows short, its chroma read from the wrong place, would be scaled to the stream's size.
        self._to_frame = av.VideoFrame.from_numpy_buffer if self._size[1] % 4 == 0 else av.VideoFrame.from_ndarray
        codec = "libvpx-vp9" if suffix == ".webm" else resolve_codec(codec, *self._size)
        options = _encoder_options(codec, crf, preset)
        threads = encoder_threads(threads)
        self.codec = codec
        self._path, self._info, self._closed = path, info, False
        rate = Fraction(info.fps).limit_denominator(1001)
        # AVI stores no timestamps, only a frame rate, so there the time base must be one frame
        self._time_base = 1 / rate if suffix == ".avi" else info.time_base
        self._step = max(1, round(1 / (rate * self._time_base)))
        # FFmpeg writes through an OutputFile: it opens the file with the first packet, and no write goes half done
        self._file = OutputFile(path)
        self._container = av.open(self._file, "w", container_options=CONTAINER_OPTIONS[suffix])
        stream = self._video = self._container.add_stream(codec, rate=rate)
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = self._time_base
        stream.codec_context.gop_size = max(1, round(rate * KEYFRAME_EVERY_S))
        stream.options = options
        if codec != NVENC:
            stream.codec_context.thread_count = threads
        self._origin: int | None = None  # first pts of a live source
        self._last_pts: int | None = None
        self._frames, self._failed = 0, False
        self._audio_in = self._audio_out = self._packets = self._pending = None
        if info.path and info.has_audio:
            self._open_audio(info.path, suffix)
        try:
            self._lock = OutputLock(path)
        except SinkError:
            self._close_audio()
            raise

    def _open_audio(self, source: str, suffix: str) -> None:
        container = av.open(source)
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        if codec not in self._container.supported_codecs:
            log.warning("%s: not copying the %s audio of %s (a %s file cannot hold it)", self._path, codec,
                        source, suffix)
            container.close()
            return
        self._audio_in = container
        self._audio_out = self._container.add_stream_from_template(stream)
        self._packets = container.demux(stream)

    def write(self, frame: Frame) -> None:
        """Encode ``frame.image`` (RGB uint8) at the frame's presentation time."""
        if self._closed:
            raise ValueError(f"VideoSink({self._path}) is closed")
        pts = self._pts(frame)
        # OpenCV's RGB->I420 is ~15x faster than swscale's here, with the same BT.601 result (dims are even).
        yuv = cv2.cvtColor(self._fit(frame.image), cv2.COLOR_RGB2YUV_I420)
        video_frame = self._to_frame(yuv, format="yuv420p")
        video_frame.pts, video_frame.time_base = pts, self._time_base
        packets = self._video.encode(video_frame)
        with self._writing():
            for packet in packets:
                self._container.mux(packet)
            if self._packets is not None:
                self._copy_audio(until=float(pts * self._time_base))
        self._frames += 1

    @contextlib.contextmanager
    def _writing(self):
        """Around writes to the file: a failing one (a full disk) becomes a SinkError, with the file cut back to
        where its last whole write ended, so it ends on a whole fragment (FFmpeg writes nothing more after it)."""
        try:
            yield
            self._file.whole()
        except OSError as exc:  # PyAV raises the OSError of the OutputFile
            self._failed = True
            self._file.cut()
            kept = ("the video plays up to about a second before" if self._file.whole_bytes else
                    "not one whole part of the video fitted, so the file is removed")
            raise SinkError(f"cannot write {self._path}: {exc.strerror or exc} (after "
                            f"{counted(self._frames, 'frame')}; {kept})") from None

    def _pts(self, frame: Frame) -> int:
        """The output pts of ``frame`` in the output time base, strictly after the previous one."""
        if self._time_base != self._info.time_base or frame.pts is None or frame.time_base is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        else:
            pts = frame.pts
            if self._info.live:
                self._origin = pts if self._origin is None else self._origin
                pts -= self._origin
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders refuse repeated timestamps
        self._last_pts = pts
        return pts

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) RGB -> the even output size: edge-padded when of the source size, else letterboxed."""
        h, w = image.shape[:2]
        width, height = self._size
        if (w, h) == (self._info.width, self._info.height):
            if (w, h) == (width, height):
                return image
            return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_REPLICATE)
        scale = min(self._info.width / w, self._info.height / h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = np.zeros((height, width, 3), np.uint8)
        x, y = (self._info.width - new_w) // 2, (self._info.height - new_h) // 2
        canvas[y:y + new_h, x:x + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        return canvas

    def _copy_audio(self, until: float) -> None:
        """Mux the input's audio packets that start before ``until`` seconds."""
        while True:
            packet, self._pending = self._pending, None
            if packet is None:
                try:
                    packet = next(self._packets, None)
                except av.FFmpegError as exc:  # a truncated input: keep the audio copied so far
                    log.warning("%s: audio copy stopped early: %s", self._path, exc)
                    packet = None
                if packet is None:
                    self._packets = None
                    return
            start = packet.pts if packet.pts is not None else packet.dts
            if start is None:  # the demuxer's end-of-stream marker
                continue
            if start * packet.time_base >= until:
                self._pending = packet
                return
            packet.stream = self._audio_out
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder, copy the audio up to the video's end, and write the container's index.

        Without a frame written, nothing is (an earlier file is left as it was). After a failed write it only lets
        go of the file, which already ends on its last whole fragment.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if not self._failed:
                packets = self._video.encode(None)
                with self._writing():
                    for packet in packets:
                        self._container.mux(packet)
                    if self._last_pts is not None and self._packets is not None:
                        self._copy_audio(until=float((self._last_pts + self._step) * self._time_base))
                    self._container.close()
        finally:
            if self._failed:
                # the failure was told; FFmpeg writes nothing after it, so closing only frees the container
                with contextlib.suppress(OSError, av.FFmpegError):
                    self._container.close()
            try:
                made = self._file.opened  # by the first write, which replaced any earlier file
                self._file.close(sync=not self._failed)
                if self._failed and made and not self._file.whole_bytes:
                    self._file.path.unlink(missing_ok=True)  # an empty file would not play: none is better
            except OSError as exc:
                raise SinkError(f"cannot write {self._path}: {exc.strerror or exc}") from None
            finally:
                self._close_audio()
                self._lock.release()

    def _close_audio(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
