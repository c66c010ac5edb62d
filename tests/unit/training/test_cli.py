"""fersr-train commands: data summary, synth, and one-line errors (exit 2) that write nothing."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fersr_stream.errors import ConfigError
from training import config, synthetic
from training.cli import cli


def _invoke(args):
    result = CliRunner().invoke(cli, args, prog_name="fersr-train")
    return result


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = synthetic.write(tmp_path_factory.mktemp("kdef"), ["F31", "M31", "F01"], width=56)
    synthetic.inject_defects(root)
    return root


def test_data_json_lists_counts_and_every_issue(tree):
    result = _invoke(["data", "--data", str(tree), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["images"] == 207
    assert set(summary["counts"]) >= {"emotion", "angle", "session", "person"}
    actions = {i["file"]: i["action"] for i in summary["issues"]}
    assert actions["AF31/AF31V.JPG"] == "renamed" and list(actions.values()).count("excluded") == 3


def test_data_text(tree):
    result = _invoke(["data", "--data", str(tree)])
    assert result.exit_code == 0
    assert "207 usable images" in result.stdout and "AM31/AM31H.JPG: renamed" in result.stdout


def test_synth_writes_kdef_layout(tmp_path):
    result = _invoke(["synth", str(tmp_path / "s"), "--people", "2", "--width", "48"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s" / "KDEF").glob("*/*.JPG"))) == 140
    summary = json.loads(_invoke(["data", "--data", str(tmp_path / "s"), "--json"]).stdout)
    assert summary["synthetic"] is True  # a study on it is reported as synthetic, however it is given
    assert "drawn by fersr-train synth: not KDEF photographs" in _invoke(["data", "--data", str(tmp_path / "s")]).stdout
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    result = _invoke(["synth", str(tmp_path / "mine")])
    assert result.exit_code == 2 and "new or empty folder" in result.stderr
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]


def test_data_counts_a_selection_of_views_and_sessions(tree):
    summary = json.loads(_invoke(["data", "--data", str(tree), "--angles", "S", "--sessions", "A", "--json"]).stdout)
    assert summary["synthetic"] is True and set(summary["counts"]["angle"]) == {"S"}
    assert set(summary["counts"]["session"]) == {"A"}
    result = _invoke(["data", "--data", str(tree), "--angles", "S,XX"])
    assert result.exit_code == 2 and "unknown value 'XX'" in result.stderr


def test_data_faces_counts_each_cut_per_view(tmp_path):
    """``data --faces`` cuts the faces as a run would (into the run's cache) and counts them per KDEF view."""
    root = synthetic.write(tmp_path / "s", 2, width=112)
    args = ["data", "--data", str(tmp_path / "s"), "--faces", "--sessions", "A", "--set", f"cache.dir={tmp_path / 'c'}"]
    summary = json.loads(_invoke(args + ["--json"]).stdout)
    views = summary["faces_by_view"]
    assert [v["view"] for v in views] == ["FL", "HL", "S", "HR", "FR", "all"] and views[-1]["images"] == 70
    for v in views:
        assert v["landmarks"] + v["detector_box"] + v["fallback_box"] == v["images"] == (70 if v["view"] == "all"
                                                                                         else 14)
        assert v["detected"] == v["landmarks"] + v["detector_box"]
    assert views[-1]["landmarks"] > 0 and list((tmp_path / "c" / "faces").glob("detections-*.json"))
    text = _invoke(args).stdout  # read back from the cache
    assert "faces per view (detector mtcnn, faces.align=landmarks)" in text
    assert f"  all       70 {views[-1]['detected']:>9}" in text and root.is_dir()


def test_report_needs_an_experiment_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    result = _invoke(["report", str(tmp_path)])
    assert result.exit_code == 2 and "not an experiment folder" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "run.json").write_text("{}")  # <out> given for <out>/<name>
    result = _invoke(["report", str(tmp_path)])
    assert result.exit_code == 2 and f"give <out>/<name>: here, {tmp_path / 'smoke'}" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--data", "{nokdef}", "--no-pretrained"], "is not a KDEF folder"),
    (["--data", "{missing}", "--no-pretrained"], "dataset folder not found"),
    (["--data", "{afile}", "--no-pretrained"], "is a file; give the dataset folder"),
    (["--data", "{tree}", "--set", "train.models=[resnet19]"], "unknown value 'resnet19'"),
    (["--data", "{tree}", "--set", "train.epoch=3"], "did you mean 'train.epochs'"),
    (["--data", "{tree}", "--config", "{missing}"], "config file not found"),
    (["--data", "{tree}", "--config", "{nokdef}"], "is a folder; give a YAML file or an installed config's name"),
    (["--data", "{tree}", "--set", "protocol.split=image", "--set", "train.models=[resnet18]"], "--no-pretrained"),
    (["--data", "{empty}", "--no-pretrained"], "no usable KDEF images"),
    (["--data", "{tree}", "--no-pretrained", "--set", "protocol.split=image", "--set", "faces.detector=yunet"],
     "fersr-models download yunet.2023mar"),
    (["--data", "{tree}", "--set", "train.lr=-1"], "'train.lr' must be > 0"),
    (["--config", "{smoke}", "--data", "{nokdef}"], "the synthetic set is written into a new or empty folder"),
    (["--data", "{partial}", "--no-pretrained"], "partial dataset"),
    (["--data", "{tree}", "--no-pretrained", "--set", "protocol.split=image", "--set", "phases.restorers=[gfpgan]"],
     "gfpgan.v1_4"),
    (["--data", "{tree}", "--set", "phases.degrade.interpolation=cubic"], "phases.degrade.interpolation"),
    (["--data", "{tree}", "--set", "faces.size=32"], "not lower than the face crops"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, tree, monkeypatch, args, message):
    monkeypatch.setenv("FERSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FERSR_OFFLINE", "1")
    (tmp_path / "nokdef").mkdir()
    (tmp_path / "nokdef" / "photo.jpg").write_bytes(b"x")
    (tmp_path / "empty" / "KDEF" / "AF01").mkdir(parents=True)  # KDEF-shaped, but no image in it
    partial = tmp_path / "partial" / "KDEF"
    for folder in tree.iterdir():  # the tree without its disgusted faces
        (partial / folder.name).mkdir(parents=True)
        for f in folder.iterdir():
            if "DI" not in f.name[4:]:
                (partial / folder.name / f.name).symlink_to(f)
    (tmp_path / "afile").write_text("x")
    fill = {"nokdef": tmp_path / "nokdef", "missing": tmp_path / "missing", "tree": tree,
            "empty": tmp_path / "empty", "partial": partial, "afile": tmp_path / "afile",
            "smoke": config.installed()["smoke"]}
    args = [a.format(**fill) for a in args]
    out = tmp_path / "runs"
    result = _invoke(["run", "--out", str(out), "--quiet", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fersr-train: error:") and message in lines[0]
    assert not out.exists()
    assert [p.name for p in (tmp_path / "nokdef").iterdir()] == ["photo.jpg"]  # a user's folder is never written


def test_config_by_name_by_its_old_clone_path_or_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nowhere near a clone
    smoke = config.installed()["smoke"]
    for given in ("smoke", "smoke.yaml", "configs/train/smoke.yaml"):
        assert config.find(given) == smoke
    assert config.load("smoke").name == "smoke"
    (tmp_path / "smoke.yaml").write_text("name: mine\n")  # a file of the user's wins
    assert config.load("smoke.yaml").name == "mine" and config.load("smoke").name == "smoke"
    result = _invoke(["run", "--config", "smok"])
    assert result.exit_code == 2 and "installed configs (--config NAME): kdef_three_phase, smoke" in result.stderr


def test_init_writes_the_installed_configs_and_keeps_edited_ones(tmp_path):
    out = tmp_path / "cfg"
    result = _invoke(["init", str(out)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in config.installed().values()) and "smoke.yaml" in names
    assert config.load(out / "smoke.yaml") == config.load("smoke")
    (out / "smoke.yaml").write_text((out / "smoke.yaml").read_text().replace("epochs: 3", "epochs: 9"))
    result = _invoke(["init", str(out)])
    assert "smoke.yaml: kept (edited; --force overwrites it)" in result.output
    assert "kdef_three_phase.yaml: up to date" in result.output
    assert config.load(out / "smoke.yaml").train.epochs == 9
    result = _invoke(["init", str(out), "--force"])
    assert "smoke.yaml: overwritten" in result.output and config.load(out / "smoke.yaml").train.epochs == 3
    (tmp_path / "file").write_text("x")
    result = _invoke(["init", str(tmp_path / "file" / "cfg")])  # under a file: no folder can be made there
    assert result.exit_code == 2 and result.stderr.startswith("fersr-train: error: cannot write the configs into ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_the_configs_are_package_data():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["training"]
    package = config.INSTALLED.parent
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert set(config.installed().values()) <= shipped and len(config.installed()) >= 2


def _interrupt(signum, before=lambda study: None):
    """Ctrl-C (Python raises KeyboardInterrupt) or a batch scheduler's SIGTERM, in the middle of the work (after
    ``before(study)``)."""
    def stopped(study, *_args, **_kwargs):
        before(study)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler breaks in at once
        raise AssertionError("SIGTERM did not stop the work")
    return stopped


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_says_what_is_kept_and_exits_as_the_signal_says(signum, tmp_path, monkeypatch, capsys):
    from training import phases

    def one_of_two_done(study):
        study.folder.mkdir(parents=True)
        (study.folder / "grid.json").write_text(json.dumps({"results": ["a/test-hr.json", "b/test-hr.json"]}))
        (study.folder / "a").mkdir()
        (study.folder / "a" / "test-hr.json").write_text("{}")

    monkeypatch.setattr(phases.Study, "run", _interrupt(signum, one_of_two_done))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--config", "smoke", "--data", str(tmp_path / "synth"), "--out", str(tmp_path / "runs"),
                  "--quiet"], prog_name="fersr-train")
    assert exit_.value.code == 128 + signum  # 130, 143
    err = capsys.readouterr().err
    assert f"stopped; the finished cells in {tmp_path / 'runs' / 'smoke'} (1 of 2 evaluations) are kept" in err
    assert signal.getsignal(signal.SIGTERM) is before  # the handler does not outlive the command


def test_a_stopped_restore_says_the_restored_faces_are_kept(tmp_path, monkeypatch, capsys):
    from training import phases

    monkeypatch.setattr(phases.Study, "restore_all", _interrupt(signal.SIGTERM))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["restore", "--config", "smoke", "--data", str(tmp_path / "synth"), "--out", str(tmp_path / "runs"),
                  "--quiet"], prog_name="fersr-train")
    assert exit_.value.code == 143
    assert f"stopped; the faces restored so far are kept in {tmp_path / 'runs' / 'cache'}" in capsys.readouterr().err


def test_a_stream_config_given_to_the_study_says_which_tool_it_is_for():
    from fersr_stream import config as stream_config

    stream_file = stream_config.installed()["restore_lowres"]
    with pytest.raises(ConfigError, match=f"^unknown config key .*{stream_file} looks like a fersr-stream config"):
        config.load(stream_file)
