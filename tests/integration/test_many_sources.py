"""Several sources in one fersr-stream run: one set of stages, each source its own tracks, timestamps and outputs;
a source that fails does not stop the others."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fersr_stream.cli.stream import stream
from fersr_stream.errors import SourceError
from fersr_stream.sources import many


def invoke(*args):
    return CliRunner().invoke(stream, [str(a) for a in args], catch_exceptions=False)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def clips(make_clip):
    """Three short clips of different lengths and face counts."""
    return [make_clip(f"{name}.mp4", n_faces=k, n_frames=n, width=240, height=180, min_size=60, max_size=80)[0]
            for name, k, n in (("a", 1, 12), ("b", 2, 8), ("c", 1, 5))]


def test_each_source_writes_its_own_outputs_as_it_would_alone(clips, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("--source", clips[0], "--source", clips[1], "--source", clips[2], "--output", out / "{name}.mp4",
                    "--jsonl", out / "{name}.jsonl", "--device", "cpu", "--stats")
    assert result.exit_code == 0, result.output
    assert "3 sources:" in result.output and "a: 12 frames" in result.output and "c: 5 frames" in result.output
    for clip, n in zip(clips, (12, 8, 5)):
        name = clip.stem
        together = lines(out / f"{name}.jsonl")
        assert [r["frame"] for r in together] == list(range(n))  # its own frames, in order, from 0
        with av.open(str(out / f"{name}.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == n
        assert (out / f"{name}.fersr.yaml").is_file()
        alone = tmp_path / f"alone-{name}.jsonl"
        assert invoke("--source", clip, "--jsonl", alone, "--device", "cpu").exit_code == 0
        for a, b in zip(lines(alone), together):  # its own tracks and smoothing: the same faces as alone
            assert [f["box"] for f in a["faces"]] == [f["box"] for f in b["faces"]]
            assert [f["track"] for f in a["faces"]] == [f["track"] for f in b["faces"]]
            for fa, fb in zip(a["faces"], b["faces"]):  # in other batches: the same probabilities, near enough
                assert all(abs(fa["probs"][k] - fb["probs"][k]) < 1e-3 for k in fa["probs"])
    assert "read 12, wrote 12" in result.output  # --stats per source


def test_several_sources_need_a_name_in_each_output(clips, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fersr_stream.cli.stream", "--source", str(clips[0]), "--source",
                           str(clips[1]), "--jsonl", str(tmp_path / "all.jsonl")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"fersr-stream: error: 2 sources would all write --jsonl {tmp_path / 'all.jsonl'}: put {{name}} in it, "
        f"e.g. {tmp_path / '{name}.jsonl'}")
    assert not (tmp_path / "all.jsonl").exists()


def test_a_source_that_fails_does_not_stop_the_others(clips, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    proc = subprocess.run([sys.executable, "-m", "fersr_stream.cli.stream", "--source", str(clips[0]), "--source",
                           str(broken), "--source", str(clips[2]), "--jsonl", str(tmp_path / "{name}.jsonl"),
                           "--device", "cpu"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr  # a source failed: the run says so
    assert "broken: failed: " in proc.stderr and "Traceback" not in proc.stderr
    assert len(lines(tmp_path / "a.jsonl")) == 12 and len(lines(tmp_path / "c.jsonl")) == 5
    assert not (tmp_path / "broken.jsonl").exists()


def test_a_folder_of_videos_a_glob_and_a_list_file_name_their_sources(clips, tmp_path, caplog):
    folder = clips[0].parent
    assert many.expand([str(folder)]) == [str(c) for c in clips]  # natural order: a, b, c
    assert not caplog.records
    cv2.imwrite(str(folder / "still.png"), np.zeros((8, 8, 3), np.uint8))
    assert many.expand([str(folder)]) == [str(c) for c in clips]
    assert caplog.messages == [f"{folder}: 1 picture skipped: a folder of videos makes each video a source; give "
                               "the pictures a folder of their own"]  # said, not silently dropped
    (folder / "still.png").unlink()
    assert many.expand([str(folder / "[ab].mp4")]) == [str(clips[0]), str(clips[1])]
    listing = tmp_path / "sources.txt"
    listing.write_text("# cameras and files\nc.mp4\n\ncam0  # the webcam\nrtsp://door.local/live\n")
    assert many.expand([str(listing)]) == [str(folder / "c.mp4"), "cam0", "rtsp://door.local/live"]
    with pytest.raises(SourceError, match="no file matches"):
        many.expand([str(folder / "*.mkv")])
    images = tmp_path / "pictures"
    images.mkdir()
    cv2.imwrite(str(images / "x.png"), np.zeros((8, 8, 3), np.uint8))
    assert many.expand([str(images)]) == [str(images)]  # a folder of pictures is one source
    assert many.names([str(clips[0]), str(clips[0]), "cam1", "rtsp://door.local/live/", str(images)]) == \
        ["a", "a-2", "cam1", "door.local_live", "pictures"]
    # a repeat's number is one no other source has: each source keeps a name, and outputs, of its own
    assert many.names(["a/clip.mp4", "c/clip-2.mp4", "b/clip.mp4"]) == ["clip", "clip-2", "clip-3"]
    assert many.names(["a/clip.mp4", "b/clip.mp4", "c/clip-2.mp4"]) == ["clip", "clip-3", "clip-2"]
    assert many.names(["http://127.0.0.1:8090/live.ts", "udp://127.0.0.1:5000"]) == ["127.0.0.1_live", "127.0.0.1"]


def test_lists_that_name_nothing_or_themselves_are_one_line_and_a_bom_is_ignored(tmp_path, clips):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(SourceError, match=r"^the list of sources .*empty.txt names no source \(only blank lines"):
        many.expand([str(empty)])
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("second.txt\n")
    second.write_text(f"{clips[0]}\nfirst.txt\n")
    with pytest.raises(SourceError, match=r"^the list of sources .*first.txt names itself \(through .*first.txt -> "
                                          r".*second.txt\)$"):
        many.expand([str(first)])
    bom = tmp_path / "bom.txt"
    bom.write_text(f"\ufeff{clips[0]}\n", encoding="utf-8")  # as Windows Notepad saves UTF-8
    assert many.expand([str(bom)]) == [str(clips[0])]


def test_sources_whose_names_collide_each_write_their_own_outputs(clips, tmp_path):
    a, c, b = tmp_path / "a" / "clip.mp4", tmp_path / "c" / "clip-2.mp4", tmp_path / "b" / "clip.mp4"
    for path, clip in ((a, clips[0]), (c, clips[1]), (b, clips[2])):
        path.parent.mkdir()
        shutil.copy(clip, path)
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("--source", a, "--source", c, "--source", b, "--jsonl", out / "{name}.jsonl")
    assert result.exit_code == 0, result.output
    assert [len(lines(out / f"{name}.jsonl")) for name in ("clip", "clip-2", "clip-3")] == [12, 8, 5]
