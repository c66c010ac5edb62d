"""Sinks: write frames from synthetic clips, read the outputs back (PyAV, OpenCV, json) and compare."""

from __future__ import annotations

import json
import logging
import socket
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from fersr_stream.classify.labels import LABELS
from fersr_stream.config import OutputConfig
from fersr_stream.errors import SinkError
from fersr_stream.sinks import ImageSink, JsonlSink, VideoSink, WindowSink, check_writable, frame_record, open_sink
from fersr_stream.sinks import window as window_module
from fersr_stream.sources import SourceInfo, open_source
from fersr_stream.types import Faces, Frame


def _probe(path):
    """(frames, video stream facts, audio seconds or None) of a written file, decoded with PyAV."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        facts = (video.codec_context.name, video.width, video.height, video.average_rate)
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_s = None
        if audio is not None:
            ends = [(p.pts + p.duration) * p.time_base for p in container.demux(audio) if p.pts is not None]
            audio_s = float(max(ends))
        container.seek(0)
        frames = list(container.decode(video=0))
    return frames, facts, audio_s


def _copy(clip, out, limit=None, **kwargs) -> int:
    """Decode ``clip`` and write up to ``limit`` frames to ``out``; returns the count written."""
    n = 0
    with open_source(str(clip)) as source, VideoSink(out, source.info, **kwargs) as sink:
        for frame in source:
            if limit is not None and n == limit:
                break
            sink.write(frame)
            n += 1
    return n


@pytest.mark.parametrize("audio", [False, True])
def test_video_round_trip_keeps_count_rate_size_and_audio(make_clip, tmp_path, audio):
    clip, _ = make_clip(n_frames=20, fps=10, audio=audio)
    assert _copy(clip, tmp_path / "out.mp4") == 20
    frames, (codec, width, height, rate), audio_s = _probe(tmp_path / "out.mp4")
    assert len(frames) == 20 and (codec, width, height, rate) == ("h264", 320, 240, 10)
    assert frames[0].format.name == "yuv420p"
    if audio:
        assert audio_s == pytest.approx(2.0, abs=0.07)  # the clip's 2 s, to within one AAC packet
    else:
        assert audio_s is None


def test_partial_run_is_playable_with_trimmed_audio(make_clip, tmp_path):
    clip, _ = make_clip(n_frames=30, fps=10, audio=True)
    _copy(clip, tmp_path / "part.mp4", limit=5)
    frames, _, audio_s = _probe(tmp_path / "part.mp4")
    assert len(frames) == 5
    assert 0.45 <= audio_s <= 0.5 + 0.07  # cut at the video's end (5 frames = 0.5 s), not the clip's 3 s


@pytest.mark.parametrize("suffix, codec", [(".mkv", "h264"), (".mov", "h264"), (".avi", "h264")])
def test_other_containers_with_audio(make_clip, tmp_path, suffix, codec):
    clip, _ = make_clip(n_frames=8, fps=10, audio=True)
    _copy(clip, tmp_path / f"out{suffix}")
    frames, facts, audio_s = _probe(tmp_path / f"out{suffix}")
    assert len(frames) == 8 and facts[:3] == (codec, 320, 240)
    assert audio_s is not None


def test_webm_is_vp9_and_skips_aac_with_a_warning(make_clip, tmp_path, caplog):
    clip, _ = make_clip(n_frames=6, fps=10, audio=True)
    with caplog.at_level(logging.WARNING, logger="fersr"):
        _copy(clip, tmp_path / "out.webm")
    frames, facts, audio_s = _probe(tmp_path / "out.webm")
    assert len(frames) == 6 and facts[0] == "vp9" and audio_s is None
    assert any("not copying the aac audio" in r.getMessage() for r in caplog.records)


def _info(width=64, height=48, fps=10.0, time_base=Fraction(1, 1000), live=False):
    return SourceInfo(width=width, height=height, fps=fps, time_base=time_base, frame_count=None, live=live,
                      path=None)


def test_variable_timing_is_kept_and_live_starts_at_zero(tmp_path):
    image = np.full((48, 64, 3), 128, np.uint8)
    times = [0.0, 0.1, 0.3, 0.7, 0.8]
    for live, origin in [(False, 0), (True, 5_000_000)]:
        out = tmp_path / f"vfr_{live}.mkv"
        with VideoSink(out, _info(live=live)) as sink:
            for i, t in enumerate(times):
                sink.write(Frame(i, image, pts=origin + round(t * 1000), time_base=Fraction(1, 1000)))
        frames, _, _ = _probe(out)
        assert [float(f.pts * f.time_base) for f in frames] == pytest.approx(times)


def test_odd_size_is_padded_and_other_sizes_letterboxed(tmp_path):
    info = _info(width=321, height=243)
    red = np.zeros((243, 321, 3), np.uint8)
    red[..., 0] = 200
    wide = np.full((50, 200, 3), 200, np.uint8)  # another size (mixed folder): scaled to fit, centred
    with VideoSink(tmp_path / "odd.mp4", info) as sink:
        sink.write(Frame(0, red, pts=0, time_base=info.time_base))
        sink.write(Frame(1, wide, pts=100, time_base=info.time_base))
    frames, (_, width, height, _), _ = _probe(tmp_path / "odd.mp4")
    assert (width, height) == (322, 244)
    first = frames[0].to_ndarray(format="rgb24").astype(int)
    assert abs(first[120, 160, 0] - 200) < 12 and first[120, 160, 2] < 12  # red stays red (RGB in, RGB out)
    second = frames[1].to_ndarray(format="rgb24").astype(int)
    assert second[5, 160].max() < 20 and second[120, 160].min() > 185  # black bars above, image in the middle


@pytest.mark.parametrize("width, height", [(320, 240), (320, 242), (6, 6), (2, 2)])
def test_every_even_height_is_encoded_whole(tmp_path, width, height):
    """Heights that are not multiples of 4 too: PyAV's zero-copy I420 frame would lose 2 rows and read its
    chroma from the wrong place there."""
    info = _info(width=width, height=height)
    y, x = np.mgrid[0:height // 2, 0:width // 2]  # 2x2 blocks of one colour: chroma subsampling loses nothing
    half = np.stack([40 + 170 * y // max(1, height // 2 - 1), 40 + 170 * x // max(1, width // 2 - 1),
                     np.full_like(y, 120)], axis=-1).astype(np.uint8)
    half[-1:] = (230, 30, 30)  # the last two rows: the ones a short frame would lose
    image = half.repeat(2, axis=0).repeat(2, axis=1)
    with VideoSink(tmp_path / "out.mp4", info, crf=0) as sink:  # crf 0: lossless
        sink.write(Frame(0, image, pts=0, time_base=info.time_base))
    frames, (_, got_w, got_h, _), _ = _probe(tmp_path / "out.mp4")
    assert (got_w, got_h) == (width, height)
    back = frames[0].to_ndarray(format="rgb24").astype(int)
    assert np.abs(back - image).max() <= 4


@pytest.mark.parametrize("path, match", [
    ("missing_dir/out.mp4", r"directory .*missing_dir does not exist; make it first: mkdir -p .*missing_dir\)$"),
    ("out.xyz", r"unknown output extension '.xyz'.*known: videos .avi .* images .bmp .*JSON lines .jsonl \(--jsonl\)"),
    ("folder.mp4", "is a directory"),
])
def test_unwritable_outputs_fail_before_any_work(tmp_path, path, match):
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(SinkError, match=match):
        open_sink(str(tmp_path / path), _info(), OutputConfig())
    assert not (tmp_path / "missing_dir").exists()


def test_writability_is_tried_without_touching_the_output(tmp_path):
    kept = tmp_path / "kept.jsonl"
    kept.write_text("earlier run\n")
    assert check_writable(kept) == kept and kept.read_text() == "earlier run\n"
    assert check_writable(tmp_path / "new.mp4") == tmp_path / "new.mp4"
    assert not (tmp_path / "new.mp4").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("name", ["out.mp4", "out.jsonl", "out.png"])
def test_a_file_system_that_refuses_files_is_a_sink_error(name):
    # permission bits are no proof (root passes them): /proc refuses new files to everyone
    with pytest.raises(SinkError, match=f"cannot write output: /proc/{name}"):
        open_sink(f"/proc/{name}", _info(), OutputConfig())


def test_bad_encoder_settings_are_sink_errors(tmp_path):
    with pytest.raises(SinkError, match="unknown preset"):
        VideoSink(tmp_path / "a.mp4", _info(), preset="warp")
    with pytest.raises(SinkError, match="crf 99 out of range"):
        VideoSink(tmp_path / "a.mp4", _info(), crf=99)
    assert not (tmp_path / "a.mp4").exists()


def test_encoder_threads_default_to_the_cores_beyond_two(tmp_path, monkeypatch):
    from fersr_stream import device
    from fersr_stream.sinks import video

    for cores, threads in [(1, 1), (2, 1), (4, 2), (16, 14)]:
        monkeypatch.setattr(device.os, "cpu_count", lambda cores=cores: cores)
        assert video.encoder_threads(0) == threads
    assert video.encoder_threads(3) == 3
    with pytest.raises(SinkError, match="threads"):
        VideoSink(tmp_path / "a.mp4", _info(), threads=-1)
    sink = VideoSink(tmp_path / "b.mp4", _info(), threads=2)
    assert sink._video.codec_context.thread_count == 2
    sink.close()


def test_close_is_idempotent_and_writing_after_close_fails(tmp_path):
    sink = VideoSink(tmp_path / "empty.mp4", _info())
    sink.close()
    sink.close()
    assert not (tmp_path / "empty.mp4").exists()
    with pytest.raises(ValueError, match="closed"):
        sink.write(Frame(0, np.zeros((48, 64, 3), np.uint8)))


def test_open_sink_picks_by_extension(tmp_path):
    info = _info()
    kinds = {"a.MP4": VideoSink, "b.png": ImageSink, "c.jsonl": JsonlSink}
    for name, kind in kinds.items():
        sink = open_sink(str(tmp_path / name), info, OutputConfig())
        assert isinstance(sink, kind)
        sink.close()


def test_image_sink_numbers_later_frames(tmp_path):
    images = [np.full((20, 30, 3), (10 * i, 100, 200), np.uint8) for i in range(3)]
    with ImageSink(tmp_path / "out.png") as sink:
        for i, image in enumerate(images):
            sink.write(Frame(i, image))
    names = ["out.png", "out_000001.png", "out_000002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    for name, image in zip(names, images):
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / name))[..., ::-1], image)


def test_a_shorter_rerun_of_an_image_sequence_warns_of_the_earlier_runs_images(tmp_path, caplog):
    image = np.zeros((20, 30, 3), np.uint8)
    (tmp_path / "out_000009.jpg").write_bytes(b"another sequence")  # another extension: not this one's
    for frames in (3, 1, 3):
        caplog.clear()
        with ImageSink(tmp_path / "out.png") as sink:
            for i in range(frames):
                sink.write(Frame(i, image))
        sink.close()  # closing again (as the run does) says nothing more
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if frames == 1:  # the first run's out_000001.png and out_000002.png are still there
            assert len(warned) == 1 and "2 image(s) from an earlier run" in warned[0]
            assert "out_000001.png" in warned[0]
        else:
            assert warned == []


def _faces(probs: bool) -> Faces:
    p = np.array([[0.1, 0.05, 0.05, 0.6, 0.1, 0.05, 0.05], [0.9, 0, 0, 0, 0.1, 0, 0]], np.float32)
    return Faces(boxes=np.array([[10.4, 20.6, 50.5, 80.0], [0, 0, 5, 5]], np.float32),
                 scores=np.array([0.93333, 0.5], np.float32),
                 track_ids=np.array([3, -1], np.int64),
                 probs=p if probs else None,
                 restored=np.array([True, False]))


def test_jsonl_lines_follow_the_schema(tmp_path):
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path)
    sink.write(Frame(0, np.zeros((8, 8, 3), np.uint8), pts=12, time_base=Fraction(1, 25), faces=_faces(True)))
    assert len(path.read_text().splitlines()) == 1  # flushed per line: readable while still open
    sink.write(Frame(1, np.zeros((8, 8, 3), np.uint8), faces=_faces(False)))
    sink.write(Frame(2, np.zeros((8, 8, 3), np.uint8)))
    sink.close()
    sink.close()
    first, second, third = [json.loads(line) for line in path.read_text().splitlines()]
    assert first["frame"] == 0 and first["time"] == 0.48
    face = first["faces"][0]
    assert set(face) == {"box", "score", "landmarks", "track", "emotion", "confidence", "probs", "restored"}
    assert face["landmarks"] is None  # a detector without landmarks (see the next test for one with)
    assert face["box"] == [10, 21, 50, 80] and all(isinstance(v, int) for v in face["box"])
    assert face["score"] == 0.9333 and face["track"] == 3 and face["restored"] is True
    assert face["emotion"] == "happy" and face["confidence"] == 0.6
    assert list(face["probs"]) == list(LABELS) and face["probs"]["angry"] == 0.05
    assert first["faces"][1]["track"] is None and first["faces"][1]["emotion"] == "afraid"
    assert second["time"] is None
    assert second["faces"][0]["emotion"] is None and second["faces"][0]["probs"] is None
    assert second["faces"][0]["confidence"] is None
    assert third["faces"] == []


def test_jsonl_landmarks_are_five_points_in_source_pixels(tmp_path):
    points = np.array([[[10.04, 20.0], [30.0, 20.5], [20.0, 30.0], [12.0, 40.0], [28.0, 40.06]]], np.float32)
    faces = Faces(np.array([[0, 0, 40, 50]], np.float32), np.ones(1, np.float32), points)
    path = tmp_path / "out.jsonl"
    with JsonlSink(path) as sink:
        sink.write(Frame(0, np.zeros((8, 8, 3), np.uint8), faces=faces))
    (face,) = json.loads(path.read_text())["faces"]
    assert face["landmarks"] == [[10.0, 20.0], [30.0, 20.5], [20.0, 30.0], [12.0, 40.0], [28.0, 40.1]]


def test_window_needs_a_display(monkeypatch):
    monkeypatch.setattr(window_module.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="--show needs a display"):
        WindowSink()


def test_window_refuses_a_display_no_x_server_answers_at(monkeypatch):
    monkeypatch.setattr(window_module.sys, "platform", "linux")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with socket.socket() as server:  # an "X server" over TCP: display N is port 6000 + N
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        display = f"127.0.0.1:{server.getsockname()[1] - 6000}.0"
        assert window_module._x_server_answers(display)
    assert not window_module._x_server_answers(display)  # closed now
    assert not window_module._x_server_answers(":987")  # no such local socket
    monkeypatch.setenv("DISPLAY", ":987")  # left from another session
    with pytest.raises(SinkError, match=r"^--show: no X server answers at DISPLAY=:987 \(a display left"):
        WindowSink()


def test_window_shows_bgr_and_q_closes(monkeypatch):
    """With the highgui calls replaced (no display here): BGR at the cv2 call, q sets wants_stop."""
    shown, destroyed, keys = [], [], [-1, ord("q")]
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(window_module, "_x_server_answers", lambda display: True)
    monkeypatch.setattr(window_module, "_gui_backend", lambda: "QT5")
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: keys.pop(0))
    monkeypatch.setattr(cv2, "destroyWindow", lambda title: destroyed.append(title))
    sink = WindowSink("test")
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    sink.write(Frame(0, red))
    assert not sink.wants_stop and (shown[0][..., 2] == 255).all() and (shown[0][..., 0] == 0).all()
    sink.write(Frame(1, red))
    assert sink.wants_stop
    sink.close()
    sink.close()
    assert len(shown) == 2 and destroyed == ["test"]


def _frames(n, info, faces: bool = False):
    """``n`` frames of ``info``'s size, each its own grey level and a moving bar (so no two encode alike)."""
    for i in range(n):
        image = np.full((info.height, info.width, 3), (7 * i) % 256, np.uint8)
        image[(3 * i) % info.height] = 255
        yield Frame(i, image, pts=round(i / info.fps / info.time_base), time_base=info.time_base,
                    faces=_faces(True) if faces else Faces.empty())


def _decodes(path) -> int:
    """How many frames of ``path`` FFmpeg decodes (raises where it cannot)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".webm", ".avi"])
def test_a_video_being_written_plays_up_to_about_its_last_second(tmp_path, suffix):
    """What is on disk while the sink is still open is what a kill -9 or a power cut would leave."""
    info = _info(width=160, height=120, fps=25.0, time_base=Fraction(1, 25))
    out = tmp_path / f"open{suffix}"
    sink = VideoSink(out, info, threads=1)
    for frame in _frames(100, info):
        sink.write(frame)
    snapshot = tmp_path / f"killed{suffix}"
    snapshot.write_bytes(out.read_bytes())
    # one keyframe a second: a fragment (cluster) is written once the next keyframe leaves the encoder, which holds
    # a few frames back for its look-ahead
    assert 100 - 25 - 15 <= _decodes(snapshot) <= 100
    sink.close()
    assert _decodes(out) == 100


def test_an_earlier_output_is_left_as_it_was_until_the_first_frame(tmp_path):
    info = _info()
    earlier = {tmp_path / "out.mp4": b"an earlier video", tmp_path / "out.jsonl": b'{"frame": 0}\n'}
    for path, data in earlier.items():
        path.write_bytes(data)
    for path in earlier:
        open_sink(path, info, OutputConfig()).close()  # a run that stops before its first frame
    assert {path: path.read_bytes() for path in earlier} == earlier
    for path in earlier:
        with open_sink(path, info, OutputConfig()) as sink:
            sink.write(next(_frames(1, info)))
    assert _decodes(tmp_path / "out.mp4") == 1
    assert json.loads((tmp_path / "out.jsonl").read_text())["frame"] == 0


@pytest.mark.parametrize("name", ["out.mp4", "out.jsonl", "out.png"])
def test_one_writer_per_output_file(tmp_path, name):
    info = _info()
    path, alias = tmp_path / name, tmp_path / f"alias{Path(name).suffix}"
    path.write_bytes(b"an earlier run's output")
    alias.symlink_to(path.name)  # another name for the same file
    first = open_sink(path, info, OutputConfig())
    for other in (path, alias):
        with pytest.raises(SinkError, match=rf"^{other} is being written by another process \(pid \d+\); wait for "
                                            r"it to end or write elsewhere$"):
            open_sink(other, info, OutputConfig())
    first.write(next(_frames(1, info)))
    first.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, alias.name])  # no lock file left behind
    open_sink(alias, info, OutputConfig()).close()  # free again


@pytest.mark.parametrize("name", ["out.mp4", "out.jsonl", "out.png"])
def test_a_dangling_symlink_output_is_refused_and_left_alone(tmp_path, name):
    link = tmp_path / name
    link.symlink_to(tmp_path / "nowhere" / name)
    with pytest.raises(SinkError, match=rf"^cannot write output: {link} \(a symbolic link to .*nowhere/{name}, "
                                        r"which does not exist\)$"):
        open_sink(link, _info(), OutputConfig())
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_full_disk_cuts_the_jsonl_back_to_its_last_whole_line(tmp_path, file_size_limit):
    path = tmp_path / "out.jsonl"
    frames = list(_frames(100, _info(), faces=True))
    line = len(json.dumps(frame_record(frames[0]))) + 1  # each line is as long, give or take a digit
    sink = JsonlSink(path)
    with file_size_limit(2 * line + line // 2), pytest.raises(SinkError) as error:
        for frame in frames:  # the third line is written in part, then the disk refuses the rest
            sink.write(frame)
    sink.close()
    assert str(error.value) == f"cannot write {path}: File too large (it keeps the 2 frames before)"
    text = path.read_text()
    assert text.endswith("\n") and [json.loads(line)["frame"] for line in text.splitlines()] == [0, 1]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_full_disk_leaves_a_video_that_plays_to_its_last_whole_fragment(tmp_path, file_size_limit, suffix):
    info = _info(width=160, height=120, fps=25.0, time_base=Fraction(1, 25))
    path = tmp_path / f"out{suffix}"
    sink = VideoSink(path, info, threads=1)
    with file_size_limit(20_000), pytest.raises(SinkError, match=rf"^cannot write {path}: File too large \(after "
                                                                  r"\d+ frames; the video plays up to about a "
                                                                  r"second before\)$"):
        for frame in _frames(1000, info):
            sink.write(frame)
    sink.close()
    assert path.stat().st_size < 20_000
    with av.logging.Capture() as logs:  # FFmpeg reads it to the end without complaint: no half fragment there
        assert _decodes(path) >= 25
    assert not [message for level, _, message in logs if level <= av.logging.ERROR]


def test_outputs_are_synced_to_disk_about_once_a_second(tmp_path, monkeypatch):
    """What a power cut may lose: about a second (the folder is synced once, so that a new file keeps its name)."""
    import os
    import stat
    from types import SimpleNamespace

    from fersr_stream.sinks import durable

    clock, synced, fsync = [0.0], [], os.fsync

    def recording_fsync(fd):
        synced.append((clock[0], "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        fsync(fd)

    monkeypatch.setattr(durable, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(durable.os, "fsync", recording_fsync)
    sink = JsonlSink(tmp_path / "out.jsonl")
    for frame in _frames(10, _info()):
        sink.write(frame)
        clock[0] += 0.25
    sink.close()
    assert synced == [(0.0, "file"), (0.0, "folder"), (1.0, "file"), (2.0, "file"), (2.5, "file")]
