"""fersr-stream end to end: click's runner and real subprocesses, on synthetic clips made in tmp_path."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from fersr_stream.cli.stream import stream

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def decode_info(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        return n, float(v.average_rate), (v.width, v.height), [s.type for s in c.streams]


def invoke(*args):
    return CliRunner().invoke(stream, [str(a) for a in args], catch_exceptions=False)


def test_annotates_clip_frames_in_equal_frames_out(make_clip, tmp_path):
    clip, boxes = make_clip(n_faces=2, n_frames=24, width=320, height=240, fps=12, audio=True)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = invoke("--source", clip, "--output", out, "--jsonl", jsonl, "--stats", "--device", "cpu")
    assert result.exit_code == 0, result.output
    n, fps, size, kinds = decode_info(out)
    assert (n, fps, size) == (24, 12.0, (320, 240))
    assert kinds == ["video", "audio"]
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(24))
    found = sum(len(r["faces"]) for r in lines)
    assert found >= 0.8 * boxes.shape[0] * boxes.shape[1]  # detections near the truth are tested per stage
    face = next(f for r in lines for f in r["faces"])
    assert set(face) >= {"box", "score", "track", "emotion", "confidence", "probs"}
    assert abs(sum(face["probs"].values()) - 1) < 1e-3
    assert (tmp_path / "out.fersr.yaml").exists()
    assert "stage fps" in result.output  # --stats table: frames, mean batch, wall and CPU ms/frame, fps per stage
    assert re.search(r"^decode\s+24\s+1\.0\s+[\d.]+\s+[\d.]+\s+[\d.]+$", result.output, re.M)  # one frame a call


def test_image_source_to_image_output(tmp_path, astronaut):
    import cv2

    src = tmp_path / "a.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    out = tmp_path / "annotated.png"
    result = invoke("--source", src, "--output", out, "--inset", "--jsonl", tmp_path / "a.jsonl")
    assert result.exit_code == 0, result.output
    image = cv2.imread(str(out))
    assert image.shape == astronaut.shape
    record = json.loads((tmp_path / "a.jsonl").read_text())
    assert record["faces"][0]["emotion"] == "happy"


@pytest.mark.parametrize("args, message", [
    (["--source", "/nope/missing.mp4", "--jsonl", "x.jsonl"], "missing.mp4"),
    (["--source", "cam9", "--jsonl", "x.jsonl"], "camera"),
    (["--source", "SRC", "--output", "/nonexistent-dir/out.mp4"], "cannot write"),
    (["--source", "SRC"], "nothing to write"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "track.smoth=0.1"], "did you mean 'track.smooth'"),
    (["--source", "SRC", "--output", "out.xyz"], "xyz"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "classify.max_wait=-1"], "classify.max_wait must be >= 0"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "track.smooth=1.5"], "track.smooth must be in [0, 1)"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "detect.scale_factor=1"], "detect.scale_factor must be > 1"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "detect=3"], "give its keys, e.g. detect.name=..."),
    (["--source", "SRC", "--output", "SRC"], "is the source; write the output to another file"),
    (["--source", "SRC", "--jsonl", "x.mp4"], "--jsonl (output.jsonl) takes a .jsonl file, got x.mp4"),
    (["--source", "SRC", "--output", "x.jsonl"], "--output (output.video) takes a video or an image"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--detector", "haar", "--detector-weights", "y.onnx"],
     "detect.weights (y.onnx) is for"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--detector-weights", "y.onnx"], "MTCNN weights not found: y.onnx"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "detect.name=["], "--set detect.name=[: not valid YAML"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "source.fps=1e300"], "source.fps must be in [0.001, 1000]"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "source.read_timeout=1e999"], "expected a finite number"),
    (["--source", "SRC", "--jsonl", "x.jsonl", "--set", "detect.name=[haar]"], "expected str, got ['haar']"),
    # a folder whose permission bits let root in but whose file system refuses new files
    pytest.param(["--source", "SRC", "--output", "/proc/out.mp4"], "cannot write output: /proc/out.mp4",
                 marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")),
])
def test_bad_input_is_one_line_and_exit_2(make_clip, tmp_path, args, message):
    clip, _ = make_clip(n_frames=3)
    before = clip.read_bytes()
    args = [str(clip) if a == "SRC" else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "fersr_stream.cli.stream", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert clip.read_bytes() == before


def test_an_image_output_in_the_source_folder_is_refused(tmp_path, astronaut):
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), astronaut)
    result = CliRunner().invoke(stream, ["--source", str(folder), "--output", str(folder / "a.png")])
    assert result.exit_code == 2 and "is the source" not in result.output and "in the source folder" in result.output
    result = CliRunner().invoke(stream, ["--source", str(folder), "--jsonl", str(folder / "faces.jsonl")])
    assert result.exit_code == 0, result.output  # what cannot be read back as a picture may go there


def test_text_file_and_empty_folder_sources(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    for src in (tmp_path / "notes.txt", tmp_path / "empty"):
        proc = subprocess.run([sys.executable, "-m", "fersr_stream.cli.stream", "--source", str(src), "--jsonl",
                               str(tmp_path / "o.jsonl")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_leaves_a_playable_partial_video(make_clip, tmp_path, sig):
    clip, _ = make_clip(n_frames=600, width=320, height=240, fps=25)
    out, jsonl = tmp_path / "partial.mp4", tmp_path / "partial.jsonl"
    # --simulate-lr + bicubic restore slows each frame a little so the run is still going when interrupted.
    proc = subprocess.Popen([sys.executable, "-m", "fersr_stream.cli.stream", "--source", str(clip), "--output",
                             str(out), "--jsonl", str(jsonl), "--simulate-lr", "16", "--enhancer", "bicubic"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 20):
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err  # 130, 143: not mistaken for a complete run
    assert "stopped early" in err
    n, fps, _, _ = decode_info(out)
    lines = jsonl.read_text().splitlines()
    assert 20 <= n < 600 and fps == 25.0
    assert all(json.loads(line) for line in lines)  # every line complete
    assert len(lines) == n  # both sinks end on the same last written frame


def test_console_script_help():
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fersr-stream"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Examples:" in proc.stdout and "--simulate-lr" in proc.stdout


def test_truncated_video_annotates_what_decodes(make_clip, tmp_path):
    clip, _ = make_clip("full.mkv", n_frames=40, width=160, height=120, fps=10)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.mp4"
    proc = subprocess.run([sys.executable, "-m", "fersr_stream.cli.stream", "--source", str(cut), "--output", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "truncated" in proc.stderr
    n, fps, _, _ = decode_info(out)
    assert 0 < n < 40 and fps == 10.0


def test_odd_sized_grayscale_folder_to_video(tmp_path, astronaut_face):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        gray = np.full((243, 321), 90, np.uint8)
        gray[40 + 10 * i:190 + 10 * i, 60:210] = cv2.cvtColor(astronaut_face, cv2.COLOR_RGB2GRAY)
        cv2.imwrite(str(folder / f"f{i}.png"), gray)
    cv2.imwrite(str(folder / "blank.png"), np.zeros((243, 321), np.uint8))  # a frame with no face
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = invoke("--source", folder, "--output", out, "--jsonl", jsonl)
    assert result.exit_code == 0, result.output
    n, _, size, _ = decode_info(out)
    assert n == 4 and size == (322, 244)  # padded to even for H.264
    faces = [len(json.loads(line)["faces"]) for line in jsonl.read_text().splitlines()]
    assert faces[0] == 0 and all(k >= 1 for k in faces[1:])  # "blank" sorts first


@pytest.mark.parametrize("args, message", [
    (["--enhancer", "gfpgan"], "fersr-models download gfpgan.v1_4"),  # missing weights, offline
    (["--set", "source.policy=foo"], "source.policy must be auto, wait or drop_oldest, got 'foo'"),
    (["--set", "degrade.interpolation=foo"], "degrade.interpolation 'foo' is unknown"),
    (["--set", "track.smooth=2"], "track.smooth must be in [0, 1)"),
    (["--set", "align.size=0", "--enhancer", "bicubic"], "align.size must be at least 16"),
])
def test_a_failing_run_leaves_existing_outputs_untouched(make_clip, tmp_path, monkeypatch, args, message):
    clip, _ = make_clip(n_frames=3)
    outputs = {tmp_path / "keep.mp4": b"an earlier video", tmp_path / "keep.jsonl": b'{"frame": 0}\n',
               tmp_path / "keep.fersr.yaml": b"earlier: config\n"}
    for path, data in outputs.items():
        path.write_bytes(data)
    monkeypatch.setenv("FERSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FERSR_OFFLINE", "1")
    result = CliRunner().invoke(stream, ["--source", str(clip), "--output", str(tmp_path / "keep.mp4"),
                                         "--jsonl", str(tmp_path / "keep.jsonl"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert {path: path.read_bytes() for path in outputs} == outputs


def test_pictures_of_a_folder_are_read_each_on_its_own(tmp_path, astronaut):
    """No track, smoothing or restoration carries over from one unrelated picture to the next."""
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    other = cv2.GaussianBlur(astronaut, (0, 0), 3)[:, ::-1].copy()  # another picture: blurred, mirrored
    cv2.imwrite(str(folder / "1.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "2.png"), cv2.cvtColor(other, cv2.COLOR_RGB2BGR))
    flags = ["--simulate-lr", "16", "--enhancer", "bicubic", "--reuse-every", "8"]
    assert invoke("--source", folder, "--jsonl", tmp_path / "both.jsonl", *flags).exit_code == 0
    assert invoke("--source", folder / "2.png", "--jsonl", tmp_path / "alone.jsonl", *flags).exit_code == 0
    both = [json.loads(line) for line in (tmp_path / "both.jsonl").read_text().splitlines()]
    alone = json.loads((tmp_path / "alone.jsonl").read_text())
    assert [r["file"] for r in both] == ["1.png", "2.png"] and alone["file"] == "2.png"
    assert both[1]["faces"] == alone["faces"] and both[1]["faces"]  # as if it were read alone
    assert [f["track"] for r in both for f in r["faces"]][:2] == [0, 0]


def test_the_saved_config_repeats_the_run_from_another_folder(make_clip, tmp_path, monkeypatch):
    clip, _ = make_clip(n_frames=4)
    monkeypatch.chdir(clip.parent)
    assert invoke("--source", clip.name, "--jsonl", "first.jsonl").exit_code == 0
    saved = clip.parent / "first.fersr.yaml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = invoke("--config", saved, "--jsonl", "again.jsonl")
    assert result.exit_code == 0, result.output
    assert (elsewhere / "again.jsonl").read_text() == (clip.parent / "first.jsonl").read_text()


def test_simulated_low_resolution_bicubic_restorer_differs_from_plain_lr(make_clip, tmp_path):
    """Plain LR is enlarged bilinearly; the bicubic restorer starts from the LR image, as in the study."""
    from fersr_stream import config as cfg
    from fersr_stream.pipeline import session

    clip, _ = make_clip(n_frames=2, width=240, height=180, min_size=100, max_size=110)
    probs = {}
    for enhancer in ("none", "bicubic"):
        jsonl = tmp_path / f"{enhancer}.jsonl"
        session.run(cfg.load(None, [f"source.uri={clip}", f"output.jsonl={jsonl}", "degrade.width=16",
                                    f"enhance.name={enhancer}", "device=cpu", "track.smooth=0"]))
        probs[enhancer] = [f["probs"] for r in jsonl.read_text().splitlines() for f in json.loads(r)["faces"]]
    assert len(probs["none"]) == len(probs["bicubic"]) > 0
    assert probs["none"] != probs["bicubic"]
