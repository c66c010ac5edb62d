"""Sources: synthetic clips and images made in tmp_path, decoded and checked against what was written."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import signal
import socket
import sys
import threading
import time
from fractions import Fraction

import av
import av.logging
import cv2
import numpy as np
import pytest

from fersr_stream.testing import synthetic
from fersr_stream.config import SourceConfig
from fersr_stream.errors import SourceError
from fersr_stream.sources import ImageSource, PyAVSource, open_source
from fersr_stream.sources import pyav
from fersr_stream.sources.pyav import dshow_video_devices, redact


def _write_png(path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), rgb[..., ::-1] if rgb.ndim == 3 else rgb)


def _encode(path, frames: list[np.ndarray], codec: str, pix_fmt: str, fps: int = 10) -> None:
    """Encode (H, W) gray or (H, W, 3) RGB frames with ``codec``/``pix_fmt``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="gray" if image.ndim == 2 else "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_file_frames_match_the_clip(make_clip, astronaut_face):
    path, boxes = make_clip(n_frames=20, width=320, height=240, fps=10)
    with open_source(str(path), SourceConfig()) as source:
        info = source.info
        frames = list(source)
    assert isinstance(source, PyAVSource)
    assert (info.width, info.height, info.fps, info.frame_count) == (320, 240, 10.0, 20)
    assert not info.live and not info.has_audio and info.path == str(path)
    assert len(frames) == info.frame_count
    assert [f.index for f in frames] == list(range(20))
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert all(f.time_base == info.time_base for f in frames)
    assert frames[5].time == pytest.approx(0.5)
    assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    # RGB, not BGR: the decoded frame is close to the rendered one (channels differ, so a swap would show)
    rendered = next(synthetic.render([astronaut_face], boxes[:1], 320, 240, 10))
    error = np.abs(frames[0].image.astype(int) - rendered).mean()
    swapped = np.abs(frames[0].image[..., ::-1].astype(int) - rendered).mean()
    assert error < 4 and swapped > 4 * error


def test_audio_is_reported(make_clip):
    path, _ = make_clip(n_frames=10, audio=True)
    with open_source(str(path)) as source:
        assert source.info.has_audio
        assert len(list(source)) == 10


def test_avi_with_b_frames_gives_increasing_pts(make_clip):
    # AVI stores no pts; FFmpeg's guesses go backwards at B-frames
    path, _ = make_clip("clip.avi", n_frames=30)
    with open_source(str(path)) as source:
        pts = [f.pts for f in source]
    assert len(pts) == 30
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert pts[-1] - pts[0] <= 30  # no drift: 30 frames at 1/10 s span 29 ticks (+1 for the skipped guess)


def test_raw_h264_without_pts_gets_synthesised_pts(make_clip):
    path, _ = make_clip("clip.h264", n_frames=12, fps=10)
    with open_source(str(path)) as source:
        assert source.info.fps == 10.0 and source.info.frame_count is None
        frames = list(source)
    assert len(frames) == 12
    times = [f.time for f in frames]
    assert times == pytest.approx([i / 10 for i in range(12)])


def test_odd_sized_grayscale_video_decodes_to_rgb(tmp_path):
    frames = [np.full((243, 321), 40 * i, np.uint8) for i in range(5)]
    _encode(tmp_path / "gray.mkv", frames, "ffv1", "gray")
    with open_source(str(tmp_path / "gray.mkv")) as source:
        assert (source.info.width, source.info.height) == (321, 243)
        decoded = list(source)
    assert len(decoded) == 5
    for i, frame in enumerate(decoded):
        assert frame.image.shape == (243, 321, 3)
        assert (frame.image == 40 * i).all()


def test_truncated_video_yields_what_decodes_and_warns(make_clip, caplog):
    path, _ = make_clip("clip.mkv", n_frames=30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="fersr"), open_source(str(path)) as source:
        frames = list(source)
    assert 0 < len(frames) < 30
    assert any("truncated" in r.getMessage() and f"decoded {len(frames)} frames" in r.getMessage()
               for r in caplog.records)


def test_complete_video_does_not_warn(make_clip, caplog):
    path, _ = make_clip("clip.mkv", n_frames=30)
    with caplog.at_level(logging.WARNING, logger="fersr"), open_source(str(path)) as source:
        assert len(list(source)) == 30
    assert not caplog.records


def test_mp4_cut_before_its_index_is_a_source_error(make_clip):
    path, _ = make_clip("clip.mp4", n_frames=30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the moov index sits at the end, so nothing can be decoded
    with pytest.raises(SourceError, match=r"^cannot read .*clip.mp4: not a video, or a damaged one \(an MP4 cut "
                                          r"short before its index"):
        open_source(str(path))
    path.write_bytes(b"")  # a copy that never started
    with pytest.raises(SourceError, match=r"^cannot read .*clip.mp4: the file is empty \(0 bytes\)$"):
        open_source(str(path))


def _blocks(height=96, width=160) -> np.ndarray:
    """An RGB picture that no turn or mirror maps onto itself: white, red and blue blocks in three corners."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:24, :40] = 255
    image[:24, -40:] = (255, 0, 0)
    image[-24:, :40] = (0, 0, 255)
    return image


@pytest.mark.parametrize("degrees, hflip", [(90, False), (-90, False), (180, False), (0, True), (90, True)])
def test_a_display_matrix_turns_frames_upright_as_players_show_them(tmp_path, degrees, hflip):
    """As FFmpeg's player and CLI show them (checked with ffmpeg 5.1's autorotate): turned counterclockwise by the
    rotation PyAV writes, then mirrored left-right."""
    image = _blocks()
    path = tmp_path / "turned.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv444p"
        stream.options = {"crf": "0"}  # lossless
        stream.set_display_rotation(degrees, hflip=hflip)
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")), *stream.encode()]:
            container.mux(packet)
    want = np.rot90(image, degrees // 90)
    want = want[:, ::-1] if hflip else want
    with open_source(str(path)) as source:
        (frame,) = list(source)
    assert (source.info.width, source.info.height) == (want.shape[1], want.shape[0])
    assert frame.image.shape == want.shape and np.abs(frame.image.astype(int) - want).mean() < 2


def test_a_phone_clip_stored_sideways_decodes_upright(tmp_path, astronaut_face):
    path = tmp_path / "phone.mp4"
    boxes = synthetic.write_clip(path, [astronaut_face], n_frames=3, width=120, height=160, rotation=90)
    with open_source(str(path)) as source:
        frames = list(source)
    assert (source.info.width, source.info.height) == (120, 160)
    rendered = list(synthetic.render([astronaut_face], boxes, 120, 160, 10))
    assert all(np.abs(f.image.astype(int) - r).mean() < 4 for f, r in zip(frames, rendered))


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv"])
def test_a_damaged_packet_is_skipped_and_counted_and_decoding_goes_on(make_clip, damage_packet, caplog, name):
    path, _ = make_clip(name, n_frames=90, width=160, height=120, min_size=40, max_size=60)
    damage_packet(path, 45)  # FFmpeg's CLI decodes 89 frames of it
    with caplog.at_level(logging.WARNING, logger="fersr"):
        with open_source(str(path)) as source:
            frames = list(source)
            assert not caplog.records  # the count is told once, on close
    assert len(frames) >= 88 and source.damaged == 1
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [r.getMessage() for r in caplog.records] == [(
        f"{path}: skipped 1 damaged packet and decoded on, as players do (frames near them may be missing or show "
        f"artefacts)")]


def test_a_file_of_which_no_frame_decodes_is_a_source_error_on_opening(make_clip, damage_index):
    path, _ = make_clip("clip.mp4", n_frames=10, width=160, height=120)
    damage_index(path)
    with pytest.raises(SourceError, match=r"^no frame of .*clip.mp4 decodes: the file, or its index, is damaged$"):
        open_source(str(path))


def test_an_http_server_without_byte_ranges_is_named_as_a_cause(make_clip):
    path, _ = make_clip("clip.mp4", n_frames=60, width=320, height=240, crf=10)  # its index at its end, past 32 KiB
    handler = functools.partial(_QuietFiles, directory=str(path.parent))  # answers a Range with the whole file
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with pytest.raises(SourceError, match=r"^no frame of http://.*clip.mp4 decodes .*or the server does not "
                                                  r"serve byte ranges"):
                open_source(f"http://127.0.0.1:{server.server_address[1]}/clip.mp4",
                            SourceConfig(open_timeout=5, read_timeout=5))
        finally:
            server.shutdown()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_image_file_is_one_frame(tmp_path):
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[..., 0] = 200  # pure red: a BGR mix-up would make it blue
    _write_png(tmp_path / "red.png", rgb)
    with open_source(str(tmp_path / "red.png"), SourceConfig(fps=4)) as source:
        assert isinstance(source, ImageSource)
        info = source.info
        frames = list(source)
    assert (info.width, info.height, info.fps, info.frame_count, info.live) == (80, 60, 4.0, 1, False)
    assert info.time_base == Fraction(1, 4)
    assert len(frames) == 1 and frames[0].pts == 0
    np.testing.assert_array_equal(frames[0].image, rgb)


def test_folder_in_natural_order_mixed_sizes_and_skips_unreadable(tmp_path, caplog):
    for value, name, size in [(10, "f10.png", (30, 40)), (2, "f2.jpg", (50, 70)), (1, "f1.png", (20, 30))]:
        _write_png(tmp_path / name, np.full((*size, 3), value * 10, np.uint8))
    (tmp_path / "f5.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING, logger="fersr"), open_source(str(tmp_path), SourceConfig(fps=2)) as src:
        info = src.info
        frames = list(src)
    assert (info.width, info.height, info.frame_count) == (30, 20, 4)
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 100]
    assert [f.image.shape[:2] for f in frames] == [(20, 30), (50, 70), (30, 40)]
    assert [f.pts for f in frames] == [0, 1, 2] and frames[2].time == 1.0
    assert any("f5.png" in r.getMessage() for r in caplog.records)


def test_odd_sized_gray_rgba_and_16_bit_images(tmp_path):
    gray = (np.arange(243 * 321) % 251).astype(np.uint8).reshape(243, 321)
    _write_png(tmp_path / "gray.png", gray)
    rgba = np.zeros((11, 13, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 255, 128  # BGRA: red, half transparent
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    deep = np.full((7, 9), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    with open_source(str(tmp_path / "gray.png")) as source:
        (frame,) = list(source)
    assert frame.image.shape == (243, 321, 3)
    assert all((frame.image[..., c] == gray).all() for c in range(3))
    with open_source(str(tmp_path / "rgba.png")) as source:
        assert (next(iter(source)).image == [255, 0, 0]).all()
    with open_source(str(tmp_path / "deep.png")) as source:
        image = next(iter(source)).image
    assert image.dtype == np.uint8 and (image == 255).all()


@pytest.mark.parametrize("name, match", [
    ("missing.mp4", "no such file or folder"),
    ("empty", "no images in folder"),
    ("notes.txt", "not a video or image file: .*notes.txt"),
    ("broken.png", "cannot decode image"),
])
def test_unusable_paths_are_source_errors(tmp_path, name, match):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello\n" * 20)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG junk")
    with pytest.raises(SourceError, match=match):
        open_source(str(tmp_path / name))


def test_folder_of_only_unreadable_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(SourceError, match="no readable images"):
        open_source(str(tmp_path))


def test_audio_only_file_has_no_video_stream(tmp_path):
    with av.open(str(tmp_path / "tone.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        synthetic._write_tone(container, stream, seconds=0.2)
    with pytest.raises(SourceError, match="no video stream"):
        open_source(str(tmp_path / "tone.m4a"))


@pytest.mark.parametrize("uri", ["cam99", "99", "/dev/video99"])
def test_missing_camera(uri):
    with pytest.raises(SourceError, match="camera"):
        open_source(uri)


# FFmpeg's own -list_devices output: 4.4 and later tag each device; older versions print headings
DSHOW_TAGGED = ['DirectShow video devices (some may be both video and audio devices)', '"Integrated Webcam" (video)',
                'Alternative name "@device_pnp_\\\\?\\usb#vid_0c45&pid_6448&mi_00#7&2645f9e4&0&0000#{65e8}\\global"',
                '"Microphone (Realtek Audio)" (audio)', '"OBS Virtual Camera" (video)',
                '"Capture Card (HDMI)" (video, audio)', 'dummy: Immediate exit requested']
DSHOW_HEADINGS = ["DirectShow video devices", ' "Integrated Camera"', ' "screen-capture-recorder"',
                  "DirectShow audio devices", ' "Internal Microphone (Conexant 2"', ' "virtual-audio-capturer"']


def test_dshow_listing_is_read_in_both_of_ffmpegs_formats():
    assert dshow_video_devices(m + "\n" for m in DSHOW_TAGGED) == [
        "Integrated Webcam", "OBS Virtual Camera", "Capture Card (HDMI)"]
    assert dshow_video_devices(m + "\n" for m in DSHOW_HEADINGS) == ["Integrated Camera", "screen-capture-recorder"]
    assert dshow_video_devices([]) == []


def test_windows_cameras_by_index_open_their_dshow_name(monkeypatch):
    monkeypatch.setattr(pyav.sys, "platform", "win32")
    monkeypatch.setattr(pyav, "dshow_cameras", lambda: ["Integrated Webcam", "OBS Virtual Camera"])
    assert pyav.camera_target(1) == ("video=OBS Virtual Camera", "dshow", {})
    with pytest.raises(SourceError, match=r"^no camera 2: DirectShow lists 0 = Integrated Webcam, 1 = OBS"):
        open_source("cam2")
    monkeypatch.setattr(pyav, "dshow_cameras", lambda: [])
    with pytest.raises(SourceError, match=r"^no camera 0: DirectShow lists none$"):
        open_source("cam0")


@pytest.mark.skipif(sys.platform == "win32", reason="FFmpeg on Windows has DirectShow")
def test_dshow_listing_without_directshow_is_one_line_and_restores_ffmpegs_log_level():
    before = av.logging.get_level()
    with pytest.raises(SourceError, match=r"^cannot list cameras: this FFmpeg \(PyAV's\) has no DirectShow input$"):
        pyav.dshow_cameras()  # this machine's FFmpeg is a Linux one
    assert av.logging.get_level() == before


def test_a_ctrl_c_while_a_stream_opens_stops_at_once():
    def slow_opening():  # FFmpeg connecting to a server that never answers
        time.sleep(3)
        return "container"

    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        pyav._interruptible(slow_opening)
    assert time.monotonic() - started < 1.0  # not the opening's 3 s
    assert pyav._interruptible(lambda: "container") == "container"
    with pytest.raises(av.FFmpegError):  # the opening's own error, raised in the waiting thread
        pyav._interruptible(lambda: av.open(os.devnull, format="mpegts"))


def test_unreachable_and_silent_urls(tmp_path):
    config = SourceConfig(open_timeout=0.5, read_timeout=0.5)
    with pytest.raises(SourceError, match=r"cannot open stream rtsp://me:\*\*\*@127\.0\.0\.1:1/x"):
        open_source("rtsp://me:secret@127.0.0.1:1/x", config)
    with socket.socket() as server:  # accepts the connection but never answers
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with pytest.raises(SourceError, match=r"no answer within 0\.5 s"):
            open_source(f"http://127.0.0.1:{server.getsockname()[1]}/x.mp4", config)
    with socket.socket() as server:  # answers, but not with a stream: closes at once
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        closer = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
        closer.start()
        with pytest.raises(SourceError, match=r"Invalid data .* \(what answered there sent no video stream: "
                                              r"check the address, port and path\)$"):
            open_source(f"rtsp://127.0.0.1:{server.getsockname()[1]}/x", config)
        closer.join(5)
    with pytest.raises(SourceError, match="unsupported URL scheme"):
        open_source("ftp://example.com/x.mp4")


def test_a_video_file_over_http_is_read_like_a_file(make_clip, tmp_path):
    """Its length is known, so no frame may be dropped (a live stream's policy would drop them)."""
    import functools
    import http.server
    import threading

    path, _ = make_clip("clip.mkv", n_frames=12)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with open_source(f"http://127.0.0.1:{server.server_address[1]}/{path.name}") as source:
                assert not source.info.live and source.info.frame_count == 12
                assert len(list(source)) == 12
        finally:
            server.shutdown()


def test_redact_hides_only_the_password():
    assert redact("rtsp://me:pw@cam.local:554/live") == "rtsp://me:***@cam.local:554/live"
    assert redact("http://cam.local/x") == "http://cam.local/x"


def test_close_is_idempotent(make_clip):
    path, _ = make_clip(n_frames=3)
    source = open_source(str(path))
    next(iter(source))
    container, closes = source._container, []

    class Counting:  # the container, counting its closes
        def close(self):
            closes.append(1)
            container.close()

    source._container = Counting()
    source.close()
    source.close()
    assert closes == [1]  # closed once, by the first call


def _yuv420p(rgb, colorspace=None, color_range=None):
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    if colorspace is not None:
        frame.colorspace = colorspace
    if color_range is not None:
        frame.color_range = color_range
    return frame


def test_bt601_yuv420p_converts_like_swscale_and_other_formats_go_through_it(astronaut_face):
    from fersr_stream.sources.pyav import to_rgb

    face = np.ascontiguousarray(astronaut_face[:120, :150])
    for colorspace in (None, 5, 6):  # unspecified, BT470BG, SMPTE170M: BT.601, converted by OpenCV
        frame = _yuv420p(face, colorspace)
        got, want = to_rgb(frame).astype(int), frame.to_ndarray(format="rgb24").astype(int)
        np.testing.assert_array_equal(got, cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420))
        assert got.shape == want.shape and np.abs(got - want).mean() < 1.5 and np.abs(got - want).max() <= 12
    # BT.709, full range, other pixel formats, odd sizes: swscale, exactly
    for frame in (_yuv420p(face, colorspace=1), _yuv420p(face, color_range=2),
                  av.VideoFrame.from_ndarray(face, format="rgb24").reformat(format="yuv444p"),
                  av.VideoFrame.from_ndarray(face[:119, :149].copy(), format="rgb24").reformat(format="yuv420p")):
        np.testing.assert_array_equal(to_rgb(frame), frame.to_ndarray(format="rgb24"))
