"""``fersr-stream --executor ray`` on a local Ray with 2 CPUs (started once for the module): the same JSON lines as
a run without Ray, a rerun that skips finished files, a worker killed mid-file whose file is tried again and ends
whole, a bad file that fails alone, a driver stopped by SIGTERM that leaves no half file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fersr_stream import config as cfg
from fersr_stream.archive import connect, driver, manifest, partial
from fersr_stream.cli.stream import stream
from fersr_stream.pipeline import models, session
from fersr_stream.testing import synthetic

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

CLIPS = (("a", 1, 120), ("b", 2, 12), ("c", 1, 6))  # name, faces, frames: "a" long enough to be killed mid-file


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs whose workers import this checkout's fersr_stream, at this process's priority (at
    Ray's own niceness 15 the killed-worker test, which starts a worker twice, ran past its time beside busy tests:
    see :func:`fersr_stream.archive.connect.init`)."""
    connect.init(None, num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory, astronaut_face):
    """A folder of three short clips, and each one's JSON lines from a plain run (no Ray)."""
    folder = tmp_path_factory.mktemp("archive")
    serial = tmp_path_factory.mktemp("serial")
    networks = None
    for name, faces, frames in CLIPS:
        clip = folder / f"{name}.mp4"
        synthetic.write_clip(clip, [astronaut_face] * faces, n_frames=frames, width=240, height=180, min_size=60,
                             max_size=80)
        config = cfg.load(None, [f"source.uri={clip}", f"output.jsonl={serial / name}.jsonl", "device=cpu"])
        networks = networks or models.load_models(config, torch.device("cpu"))
        session.run(config, networks)
    return folder, serial


def invoke(*args):
    return CliRunner().invoke(stream, [str(a) for a in args], prog_name="fersr-stream")


def test_the_same_json_lines_as_without_ray_and_a_rerun_skips(local_ray, archive, tmp_path):
    folder, serial = archive
    args = ("--source", folder, "--output", tmp_path / "{name}.mp4", "--jsonl", tmp_path / "{name}.jsonl",
            "--device", "cpu", "--executor", "ray", "--workers", "2")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "3 files: 3 done, 0 skipped (already done), 0 failed; 138 frames" in result.output
    for name, _, _ in CLIPS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (serial / f"{name}.jsonl").read_bytes()
        assert (tmp_path / f"{name}.mp4").stat().st_size > 0 and (tmp_path / f"{name}.fersr.yaml").is_file()
        assert (tmp_path / manifest.FOLDER / f"{name}.json").is_file()
    assert not (tmp_path / partial.FOLDER).exists()
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "3 files: 0 done, 3 skipped (already done), 0 failed" in again.output
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_a_bad_file_among_good_ones_fails_alone(local_ray, archive, tmp_path, damage_packet):
    folder, serial = archive
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes((folder / "a.mp4").read_bytes())
    damage_packet(damaged, 5)
    out = tmp_path / "out"
    out.mkdir()
    result = invoke("--source", broken, "--source", folder / "c.mp4", "--source", damaged, "--jsonl",
                    out / "{name}.jsonl", "--device", "cpu", "--executor", "ray", "--workers", "1")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert "3 files: 2 done, 0 skipped (already done), 1 failed" in lines[-3]
    assert lines[-2].startswith("damaged: warning: ") and "damaged" in lines[-2][18:]  # a worker's warning, told
    assert lines[-1].startswith("broken: failed: ") and "tries" not in lines[-1]  # a bad input: not tried again
    assert (out / "c.jsonl").read_bytes() == (serial / "c.jsonl").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == [manifest.FOLDER, "c.fersr.yaml", "c.jsonl", "damaged.fersr.yaml",
                                                     "damaged.jsonl"]


def _kill_mid_file(name: str, after_frames: int, done: threading.Event) -> list[int]:
    """SIGKILL the worker process on ``name`` once it has written ``after_frames`` frames; the pids killed."""
    killed = []
    while not done.is_set() and not killed:
        for actor in ray.util.list_named_actors():
            if not actor.startswith("fersr-archive-tally-"):
                continue
            try:
                with_progress = ray.get(ray.get_actor(actor).snapshot.remote()).get(name)
            except (ValueError, ray.exceptions.RayActorError):  # an earlier test's tally, being killed
                continue
            if with_progress and with_progress[0] >= after_frames:
                os.kill(with_progress[2], signal.SIGKILL)
                killed.append(with_progress[2])
        time.sleep(0.05)
    return killed


def test_a_worker_killed_mid_file_is_retried_and_the_file_ends_whole(local_ray, archive, tmp_path):
    folder, serial = archive
    config = cfg.load(None, [f"source.uri={folder / 'a.mp4'}", f"output.video={tmp_path / '{name}.mkv'}",
                             f"output.jsonl={tmp_path / '{name}.jsonl'}", "device=cpu"])
    done, outcome = threading.Event(), {}

    def annotate():
        try:
            outcome["run"] = driver.run(config, workers=1)
        finally:
            done.set()

    thread = threading.Thread(target=annotate)
    thread.start()
    killed = _kill_mid_file("a", 6, done)
    thread.join(timeout=240)
    assert killed and not thread.is_alive()
    run = outcome["run"]
    assert list(run.done) == ["a"] and not run.failed, run.text()
    assert run.done["a"]["frames"] == 120
    assert (tmp_path / "a.jsonl").read_bytes() == (serial / "a.jsonl").read_bytes()  # whole, nothing twice
    assert not (tmp_path / partial.FOLDER).exists()


@pytest.mark.slow  # a Ray of its own in a second process: about 20 s
def test_sigterm_stops_the_run_and_no_half_file_gets_a_final_name(archive, astronaut_face, tmp_path):
    long = tmp_path / "long.mp4"
    synthetic.write_clip(long, [astronaut_face], n_frames=300, width=240, height=180, min_size=60, max_size=80)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "fersr_stream.cli.stream", "--source", str(long), "--jsonl",
                             str(out / "{name}.jsonl"), "--device", "cpu", "--executor", "ray", "--workers", "1"],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not [p for p in out.glob(f"{partial.FOLDER}/long/*/long.jsonl") if p.stat().st_size] and \
            time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # until the file is in flight
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    *_, stopped, left = err.strip().splitlines()
    assert stopped.startswith("stopped early: 1 file: 0 done") and left.startswith("not done: long ("), err
    assert not (out / "long.jsonl").exists() and not (out / manifest.FOLDER).exists()
