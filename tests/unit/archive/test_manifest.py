"""The manifest: what a finished file was made from, and when a rerun may skip it."""

from __future__ import annotations

import dataclasses
import os

import pytest

from fersr_stream import config as cfg
from fersr_stream.archive import manifest


@pytest.fixture()
def finished(tmp_path):
    """A one-source config whose outputs exist and whose manifest says so; returns (plan, settings)."""
    source = tmp_path / "a.mp4"
    source.write_bytes(b"video bytes" * 100)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.mp4").write_bytes(b"annotated")
    (out / "a.jsonl").write_text('{"frame": 0}\n')
    plan = cfg.load(None, [f"source.uri={source}", f"output.video={out / 'a.mp4'}", f"output.jsonl={out / 'a.jsonl'}"])
    settings = manifest.fingerprint(plan)
    manifest.write(manifest.path(plan, "a"), manifest.record(plan, settings))
    return plan, settings


def test_the_fingerprint_ignores_paths_but_not_settings():
    base = cfg.load(None, ["source.uri=a.mp4", "output.jsonl=out/a.jsonl"])
    moved = cfg.load(None, ["source.uri=b.mp4", "output.jsonl=elsewhere/b.jsonl"])
    smoother = cfg.load(None, ["source.uri=a.mp4", "output.jsonl=out/a.jsonl", "track.smooth=0.9"])
    assert manifest.fingerprint(base) == manifest.fingerprint(moved)
    assert manifest.fingerprint(base) != manifest.fingerprint(smoother)


def test_a_manifest_is_written_atomically_beside_the_outputs(finished):
    plan, settings = finished
    path = manifest.path(plan, "a")
    assert path.parent.name == ".fersr-archive" and path.name == "a.json"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary file left
    data = manifest.read(path)
    assert data["settings"] == settings and data["input"]["sha256"] == manifest.sha256(plan.source.uri[0])
    assert [o["size"] for o in data["outputs"]] == [len(b"annotated"), len('{"frame": 0}\n')]
    # readable by whoever may read the outputs: made as they are (the umask decides), not private (0o600)
    output = plan.output.jsonl
    assert path.stat().st_mode & 0o777 == os.stat(output).st_mode & 0o777


def test_an_unchanged_file_is_finished(finished):
    plan, settings = finished
    assert manifest.finished(plan, "a", settings)
    os.utime(plan.source.uri[0])  # touched, same bytes: hashed again, still the same
    assert manifest.finished(plan, "a", settings)


@pytest.mark.parametrize("change", ["input", "output", "missing output", "settings", "other outputs", "no manifest"])
def test_anything_changed_means_not_finished(finished, change):
    plan, settings = finished
    if change == "input":
        with open(plan.source.uri[0], "r+b") as f:  # same size, other bytes
            f.write(b"X")
    elif change == "output":
        with open(plan.output.jsonl, "a") as f:
            f.write('{"frame": 1}\n')
    elif change == "missing output":
        os.unlink(plan.output.video)
    elif change == "settings":
        settings = manifest.fingerprint(dataclasses.replace(plan, max_frames=3))
    elif change == "other outputs":
        plan = dataclasses.replace(plan, output=dataclasses.replace(plan.output, video=None))
    else:
        manifest.path(plan, "a").unlink()
    assert not manifest.finished(plan, "a", settings)


def test_a_damaged_manifest_is_no_manifest(finished):
    plan, settings = finished
    manifest.path(plan, "a").write_text("{not json")
    assert manifest.read(manifest.path(plan, "a")) is None
    assert not manifest.finished(plan, "a", settings)
