"""An attempt's temporary outputs: beside the final ones, with their extensions, renamed only on commit."""

from __future__ import annotations

import pytest

from fersr_stream import config as cfg
from fersr_stream.archive import partial
from fersr_stream.errors import SinkError


@pytest.fixture()
def plan(tmp_path):
    (tmp_path / "out").mkdir()
    return cfg.load(None, [f"source.uri={tmp_path / 'a.mp4'}", f"output.video={tmp_path / 'out' / 'a.mkv'}",
                           f"output.jsonl={tmp_path / 'out' / 'a.jsonl'}"])


def test_temporary_outputs_keep_their_names_in_a_folder_of_their_own(plan, tmp_path):
    with partial.Attempt(plan, "a") as attempt:
        video, jsonl = attempt.temp_plan.output.video, attempt.temp_plan.output.jsonl
        assert video.endswith("/a.mkv") and jsonl.endswith("/a.jsonl")  # FFmpeg picks the container by it
        assert f"/out/{partial.FOLDER}/a/{attempt.token}/" in video
        assert attempt.temp_plan.source == plan.source
    assert not (tmp_path / "out" / partial.FOLDER / "a").exists()  # not committed: nothing stays


def test_commit_renames_every_output_and_the_config_into_place(plan, tmp_path):
    with partial.Attempt(plan, "a") as attempt:
        for path in (attempt.temp_plan.output.video, attempt.temp_plan.output.jsonl):
            with open(path, "w") as f:
                f.write("whole")
        assert not (tmp_path / "out" / "a.mkv").exists()  # never a final name before the end
        attempt.commit()
    out = tmp_path / "out"
    assert (out / "a.mkv").read_text() == "whole" and (out / "a.jsonl").read_text() == "whole"
    saved = cfg.load(out / "a.fersr.yaml")
    assert saved.output.video == str(out / "a.mkv")  # the final paths, not the temporary ones
    assert sorted(p.name for p in out.iterdir()) == [partial.FOLDER, "a.fersr.yaml", "a.jsonl", "a.mkv"]


def test_an_attempt_holds_the_outputs_locks_and_clears_a_dead_attempts_folder(plan, tmp_path):
    stale = tmp_path / "out" / partial.FOLDER / "a" / "deadbeef"
    stale.mkdir(parents=True)
    (stale / "a.jsonl").write_text('{"frame": 0')
    with partial.Attempt(plan, "a"):
        assert not stale.exists()
        with pytest.raises(SinkError, match="being written by another process"):
            partial.Attempt(plan, "a")
    with partial.Attempt(plan, "a"):  # released
        pass
