"""fersr-stream with real restorer code end to end: random-init official-layout weights published through a
mirror, fetched with `fersr-models download`, then restored in the stream with per-track reuse."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from fersr_stream import config as cfg
from fersr_stream.cli.models import cli as models_cli
from fersr_stream.testing import random_weights
from fersr_stream.pipeline import session
from fersr_stream.weights import registry, store


@pytest.fixture()
def published(tmp_path, monkeypatch):
    """Publish a random-init checkpoint under a registry name: a mirror folder and a spec with its hash."""

    def publish(name, save):
        mirror = tmp_path / "mirror"
        mirror.mkdir(exist_ok=True)
        spec = registry.get(name)
        path = save(mirror / spec.filename)
        fake = dataclasses.replace(spec, sha256=store.sha256_file(path), size=path.stat().st_size)
        monkeypatch.setitem(registry.REGISTRY, name, fake)
        monkeypatch.setenv("FERSR_WEIGHTS_MIRROR", mirror.as_uri())
        monkeypatch.setenv("FERSR_HOME", str(tmp_path / "home"))
        return fake

    return publish


@pytest.mark.parametrize("name, entry, save", [
    ("gfpgan", "gfpgan.v1_4", random_weights.save_gfpgan),
    ("codeformer", "codeformer.v0_1", lambda p: random_weights.save_codeformer(p, full=False)),
])
def test_restore_in_stream_with_weights_from_fersr_models(published, make_clip, tmp_path, monkeypatch, name, entry,
                                                          save):
    published(entry, save)
    result = CliRunner().invoke(models_cli, ["download", entry, "--quiet"])
    assert result.exit_code == 0, result.output
    assert store.path(entry).is_file()
    monkeypatch.setenv("FERSR_OFFLINE", "1")  # the stream must use the cached file, not download

    clip, _ = make_clip(n_frames=4, width=240, height=180, fps=8, min_size=100, max_size=110)
    jsonl = tmp_path / "out.jsonl"
    config = cfg.load(None, [f"source.uri={clip}", f"output.jsonl={jsonl}", f"output.video={tmp_path / 'o.mp4'}",
                             f"enhance.name={name}", f"enhance.weights={entry}", "enhance.reuse_every=8",
                             "degrade.width=16", "overlay.paste=true", "device=cpu"])
    summary = session.run(config)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    faces = [f for r in records for f in r["faces"]]
    assert len(records) == 4 and faces and all(f["restored"] for f in faces)
    tracks = {f["track"] for f in faces}
    counters = summary.stats.counters
    assert counters["restorations"] == len(tracks)  # one per track, then reused
    assert counters["reuses"] == len(faces) - len(tracks)
