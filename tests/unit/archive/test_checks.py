"""What ``fersr-stream --executor ray`` refuses, one line and exit 2, before Ray starts or anything is written."""

from __future__ import annotations

import socket
import sys

import pytest
from click.testing import CliRunner

from fersr_stream.archive import checks
from fersr_stream.cli.stream import stream


def refusal(*args) -> str:
    """The one-line error of a refused run."""
    result = CliRunner().invoke(stream, [str(a) for a in args], prog_name="fersr-stream")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture()
def video(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(b"\0" * 64)
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("flag", [("--workers", "2"), ("--retries", "1"), ("--ray-address", "127.0.0.1:6379")])
def test_ray_flags_need_the_ray_executor(video, tmp_path, flag):
    line = refusal("--source", video, "--jsonl", tmp_path / "a.jsonl", *flag)
    assert line == f"fersr-stream: error: {flag[0]} only applies with --executor ray"


@pytest.mark.parametrize("args, words", [
    (("--source", "cam0", "--jsonl", "{tmp}/x.jsonl"), "cam0 is a camera or a live stream"),
    (("--source", "rtsp://door/live", "--jsonl", "{tmp}/x.jsonl"), "is a camera or a live stream"),
    (("--source", "{video}", "--show"), "--show cannot be used with --executor ray"),
    (("--source", "{video}", "--jsonl", "{tmp}/x.jsonl", "--metrics-port", "9100"), "--metrics-port cannot"),
    (("--source", "{video}", "--output", "{tmp}/x.png"), "writes videos and JSON lines"),
    (("--source", "{video}", "--jsonl", "{tmp}/x.jsonl", "--stats"), "--stats cannot be used"),
    (("--source", "{tmp}/pictures", "--jsonl", "{tmp}/out.jsonl"), "pictures is not a file"),
    (("--source", "{video}"), "nothing to write"),
])
def test_what_the_ray_executor_refuses(video, tmp_path, args, words):
    (tmp_path / "pictures").mkdir()  # a folder of pictures: one source, not a file
    (tmp_path / "pictures" / "still.png").write_bytes(b"")
    args = [a.format(tmp=tmp_path, video=video) for a in args]
    line = refusal(*args, "--executor", "ray")
    assert words in line, line
    assert not list(tmp_path.glob("*.jsonl"))


def test_an_address_nothing_answers_fails_at_once(video, tmp_path):
    port = closed_port()
    line = refusal("--source", video, "--jsonl", tmp_path / "a.jsonl", "--executor", "ray", "--ray-address",
                   f"127.0.0.1:{port}")
    assert line.startswith(f"fersr-stream: error: no Ray cluster answers at 127.0.0.1:{port}")
    assert "ray start --head" in line


def test_a_malformed_address(video, tmp_path):
    line = refusal("--source", video, "--jsonl", tmp_path / "a.jsonl", "--executor", "ray", "--ray-address", "head")
    assert "--ray-address takes HOST:PORT" in line


def test_without_ray_the_install_command(video, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    line = refusal("--source", video, "--jsonl", tmp_path / "a.jsonl", "--executor", "ray")
    assert line == f"fersr-stream: error: --executor ray needs Ray, which is not installed: {checks.INSTALL}"
    assert checks.INSTALL == "pip install -e '.[ray]'"
