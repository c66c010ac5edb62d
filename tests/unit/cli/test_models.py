"""``fersr-models`` through click's runner (and once as a real process), with a file:// mirror as the server."""

from __future__ import annotations

import hashlib
import json
import re
import random
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from fersr_stream.cli import Group, run_cli
from fersr_stream.cli.models import cli
from fersr_stream.errors import ConfigError
from fersr_stream.weights import registry, store
from fersr_stream.weights.registry import WeightSpec

DATA = random.Random(1).randbytes(4096)
NAME = "test.tiny"


@pytest.fixture()
def tiny(tmp_path, monkeypatch) -> WeightSpec:
    """A registry entry whose upstream is unreachable, fetched from a file:// mirror holding DATA."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.pth").write_bytes(DATA)
    monkeypatch.setenv("FERSR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FERSR_WEIGHTS_MIRROR", mirror.as_uri())
    monkeypatch.delenv("FERSR_OFFLINE", raising=False)
    spec = WeightSpec(NAME, ("https://example.invalid/tiny.pth",), hashlib.sha256(DATA).hexdigest(), len(DATA),
                      "MIT", "restorer")
    monkeypatch.setitem(registry.REGISTRY, NAME, spec)
    return spec


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="fersr-models")


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fersr-models: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_list_json_shows_licences_and_cache_state(tiny):
    rows = json.loads(run("list", "--json").stdout)
    by_name = {row["name"]: row for row in rows}
    assert "non-commercial" in by_name["codeformer.v0_1"]["licence"]
    assert by_name[NAME]["cached"] is False and by_name[NAME]["size_bytes"] == len(DATA)
    assert run("download", "-q", NAME).exit_code == 0
    assert {row["name"]: row for row in json.loads(run("list", "--json").stdout)}[NAME]["cached"] is True
    store.path(NAME).write_bytes(DATA[:-1])  # a file of the wrong size is not "cached"
    assert {row["name"]: row for row in json.loads(run("list", "--json").stdout)}[NAME]["cached"] is False
    assert re.search(rf"^{re.escape(NAME)} .* bad size$", run("list").stdout, re.M)


def test_list_table_and_kind_filter(tiny):
    table = run("list").stdout
    assert "S-Lab-1.0 (non-commercial)" in table and "CACHED" in table
    restorers = run("list", "--kind", "restorer").stdout
    assert "gfpgan.v1_4" in restorers and "yunet" not in restorers
    assert_one_line_error(run("list", "--kind", "nope"), "--kind")


def test_download_verify_path(tiny):
    result = run("download", NAME)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(store.path(NAME))
    assert store.path(NAME).read_bytes() == DATA
    assert run("path", NAME).stdout.strip() == str(store.path(NAME))

    verified = run("verify")
    assert verified.exit_code == 0 and verified.stdout.startswith(f"ok       {NAME}")
    store.path(NAME).write_bytes(bytes(len(DATA)))
    result = run("verify", NAME)
    assert f"FAIL     {NAME}" in result.stdout
    assert_one_line_error(result, "1 of 1 failed verification")


def test_download_prints_licence_notes(tiny, monkeypatch):
    monkeypatch.setitem(registry.REGISTRY, NAME, WeightSpec(**{**tiny.__dict__, "notes": "research use only"}))
    result = run("download", "-q", NAME)
    assert result.exit_code == 0 and "research use only" in result.stderr


def test_import_right_and_wrong(tiny, tmp_path):
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(bytes(len(DATA)))
    assert_one_line_error(run("import", str(wrong), "--as", NAME), "nothing was imported")
    assert not store.path(NAME).exists()
    right = tmp_path / "right.pth"
    right.write_bytes(DATA)
    result = run("import", str(right), "--as", NAME)
    assert result.exit_code == 0 and result.stdout.strip() == str(store.path(NAME))


def test_user_errors_are_one_line_with_exit_2(tiny, monkeypatch):
    assert_one_line_error(run("path", "gfpgan.v1.4"), "unknown weights", "did you mean gfpgan.v1_4")
    assert_one_line_error(run("download", "gfpgan"), "did you mean gfpgan.v1_3, gfpgan.v1_4?")  # its versions only
    assert_one_line_error(run("download"), "Missing argument", "fersr-models download --help")
    assert_one_line_error(run("frobnicate"), "No such command")
    # an unknown name is refused before anything is fetched
    assert_one_line_error(run("download", NAME, "nope.nope"), "nope.nope")
    assert not store.path(NAME).exists()
    monkeypatch.setenv("FERSR_OFFLINE", "1")
    assert_one_line_error(run("download", NAME), f"fersr-models download {NAME}", str(store.path(NAME)))


def test_help_has_examples():
    result = run("--help")
    assert result.exit_code == 0 and "Examples:" in result.stdout and "fersr-models import" in result.stdout
    bare = run()
    assert "Usage: fersr-models" in bare.output and "error:" not in bare.output


def test_shared_error_policy():
    @click.group(name="demo", cls=Group)
    def demo():
        pass

    @demo.command()
    def user():
        raise ConfigError("bad key 'x'\nsecond line")

    @demo.command()
    def interrupt():
        raise KeyboardInterrupt

    @demo.command()
    def bug():
        raise RuntimeError("a bug")

    runner = CliRunner()
    result = runner.invoke(demo, ["user"])
    assert result.exit_code == 2 and result.stderr == "demo: error: bad key 'x' second line\n"
    assert runner.invoke(demo, ["interrupt"]).exit_code == 130
    result = runner.invoke(demo, ["bug"])
    assert isinstance(result.exception, RuntimeError)
    assert "error:" not in result.stderr


def test_run_cli_with_a_plain_command(capsys):
    @click.command()
    @click.option("--n", type=int, default=0)
    def plain(n):
        if n < 0:
            raise ConfigError("n must be >= 0")
        return n

    for args, code, err in ((["--n", "-1"], 2, "plain: error: n must be >= 0\n"), (["--n", "3"], 3, ""),
                            (["--n", "x"], 2, "plain: error: Invalid value for '--n'")):
        with pytest.raises(SystemExit) as exited:
            run_cli(plain, "plain", args)
        assert exited.value.code == code
        assert capsys.readouterr().err.startswith(err)


def test_real_process_exit_code_and_stderr(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FERSR_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "fersr_stream.cli.models", "path", "no.such"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == ["fersr-models: error: unknown weights 'no.such'; see `fersr-models list`"]
