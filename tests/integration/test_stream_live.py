"""fersr-stream on live network streams that are lost, come back, stall or never come back: real servers on
127.0.0.1 (FFmpeg over HTTP and RTMP, GStreamer over RTSP; see fersr_stream.testing.servers) streaming a synthetic
clip in real time, killed, paused and restarted under a real fersr-stream process. Each test skips, saying which
Debian packages it needs, where its server cannot run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import av
import pytest

from fersr_stream.testing import servers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the test servers run on Linux")

_FPS = 25


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut_face) -> str:
    """12 s of one moving face, 160 x 120 at 25 fps, a keyframe a second (a reconnect starts decoding at one)."""
    from fersr_stream.testing import synthetic

    path = tmp_path_factory.mktemp("live") / "clip.mp4"
    synthetic.write_clip(path, [astronaut_face], n_frames=12 * _FPS, width=160, height=120, fps=_FPS, min_size=40,
                         max_size=60)
    return str(path)


def _server(kind: str, clip: str) -> servers.StreamServer:
    why = servers.missing(kind)
    if why:
        pytest.skip(why)
    return servers.StreamServer(kind, clip)


class Run:
    """A fersr-stream process writing ``out.jsonl`` and ``out.mp4`` in ``folder``, its stderr lines timed as they
    come."""

    def __init__(self, folder, url: str, *args):
        self.jsonl, self.video = folder / "out.jsonl", folder / "out.mp4"
        command = [sys.executable, "-m", "fersr_stream.cli.stream", "--source", url, "--jsonl", self.jsonl,
                   "--output", self.video, *args]
        self.process = subprocess.Popen(list(map(str, command)), stderr=subprocess.PIPE, text=True)
        self.stderr: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.stderr.append((time.monotonic(), line.rstrip("\n")))

    def lines(self) -> list[dict]:
        """The whole lines written so far: a line that crosses a page of the page cache can be read half written
        (Linux copies a write in page by page), so a last line without its newline is left for the next look."""
        text = self.jsonl.read_text() if self.jsonl.exists() else ""
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def wait_for(self, what, timeout: float = 60) -> float:
        """Wait until ``what()`` is true while the run goes on; the clock then."""
        deadline = time.monotonic() + timeout
        while not what():
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, f"waited {timeout} s in vain:\n{self.text()}"
            time.sleep(0.02)
        return time.monotonic()

    def said(self, words: str) -> float | None:
        """When a stderr line with ``words`` came, or None."""
        return next((t for t, line in self.stderr if words in line), None)

    def end(self, timeout: float = 60) -> int:
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(timeout=10)
        return code

    def text(self) -> str:
        return "\n".join(line for _, line in self.stderr)


def _video_times(path) -> list[float]:
    """Presentation times of the frames FFmpeg decodes from ``path``, asserting that it reports no error."""
    with av.logging.Capture() as logs, av.open(str(path)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    assert not [message for level, _, message in logs if level <= av.logging.ERROR]
    return times


@pytest.mark.parametrize("kind", servers.KINDS)
def test_a_lost_stream_is_reconnected_and_its_frames_numbered_and_timed_on(kind, clip, tmp_path):
    with _server(kind, clip) as server:
        run = Run(tmp_path, server.url, "--max-frames", 80)
        run.wait_for(lambda: len(run.lines()) >= 15)
        server.kill()  # the run sees the connection close (HTTP, RTSP) or fail (RTMP)
        run.wait_for(lambda: run.said("reconnecting for up to 60 s (source.reconnect_for)"))
        time.sleep(3)
        server.start()
        code = run.end()
    assert code == 0, run.text()  # ended by --max-frames: every frame asked for was read
    lost = run.said(f"{server.url}: lost after frame")
    assert run.said(f"{server.url}: reconnected after") > lost + 3
    assert "stream: lost 1 time, reconnected 1 time" in run.text() and "Traceback" not in run.text()
    lines = run.lines()
    frames, times = [r["frame"] for r in lines], [r["time"] for r in lines]
    assert frames[0] == 0 and all(b > a for a, b in zip(frames, frames[1:])) and frames[-1] <= 79
    assert all(b > a for a, b in zip(times, times[1:]))
    # one gap as long as the outage (the server was down 3 s), frame numbers going on across it
    gaps = [b - a for a, b in zip(times, times[1:])]
    outage = gaps.index(max(gaps))
    assert 3 <= gaps[outage] <= 8 and sorted(gaps)[-2] < 1
    # before it, the stream's own timing from 0 (an MPEG-TS stream's timestamps start at 1.4 s, RTMP's at 80 ms)
    assert all(abs(t - f / _FPS) < 0.15 for f, t in zip(frames[:outage + 1], times[:outage + 1]))
    assert len(lines) - outage > 15  # the frames after it were written too
    # the video: whole, with the times of the JSON lines
    assert _video_times(run.video) == pytest.approx(times, abs=0.002)


@pytest.mark.parametrize("kind", [pytest.param("http", marks=pytest.mark.slow),
                                  pytest.param("rtmp", marks=pytest.mark.slow), "rtsp"])
def test_a_stream_that_stalls_for_good_is_lost_at_read_timeout_and_given_up_after_reconnect_for(kind, clip,
                                                                                              tmp_path):
    with _server(kind, clip) as server:
        run = Run(tmp_path, server.url, "--set", "source.read_timeout=2", "--set", "source.reconnect_for=2",
                  "--set", "source.open_timeout=1")
        run.wait_for(lambda: len(run.lines()) >= 15)
        server.pause()  # the connection stays open, and silent; so does the RTSP server's port, for the reconnects
        written, last = len(run.lines()), time.monotonic()
        while run.process.poll() is None:  # when the last frame was written: a few ms after it was read
            if len(run.lines()) > written:
                written, last = len(run.lines()), time.monotonic()
            time.sleep(0.01)
        code = run.end()
    assert code == 2
    (lost, note), (gave_up, error) = run.stderr
    frame = run.lines()[-1]["frame"]
    assert note == (f"{server.url}: lost after frame {frame}: no data for 2 s (source.read_timeout); reconnecting "
                    f"for up to 2 s (source.reconnect_for)")
    assert 1 <= lost - last <= 3  # at read_timeout, not at twice it
    assert error.startswith(f"fersr-stream: error: lost {server.url} after frame {frame}: no data for 2 s "
                            f"(source.read_timeout); no reconnect within 2 s (source.reconnect_for) (the last try: ")
    if kind == "rtsp":  # the paused server's port still takes connections: the tries time out
        assert error.endswith("(the last try: no answer within 1 s (source.open_timeout))")
    assert 1 <= gave_up - lost <= 3
    assert len(_video_times(run.video)) == len(run.lines())  # finalized: every frame written is in the video


def test_a_ctrl_c_on_a_silent_stream_says_at_once_that_the_read_may_take_its_timeout(clip, tmp_path):
    with _server("rtsp", clip) as server:
        run = Run(tmp_path, server.url, "--set", "source.read_timeout=4")
        run.wait_for(lambda: len(run.lines()) >= 15)
        server.pause()  # silent: the read waits
        time.sleep(0.5)
        asked = time.monotonic()
        run.process.send_signal(signal.SIGINT)
        code = run.end()
    said = run.said("fersr-stream: stopping: the outputs are finalized at once; a network stream's read that waits on "
                    "a silent server ends within 4 s (source.read_timeout)")
    assert code == 130 and said is not None and said - asked < 2, run.text()  # not only when the read gives up
    assert len(_video_times(run.video)) == len(run.lines())


@pytest.mark.slow
def test_a_stream_whose_server_is_gone_for_good_ends_the_run_with_one_line_and_finalized_outputs(clip, tmp_path):
    with _server("http", clip) as server:
        run = Run(tmp_path, server.url, "--set", "source.reconnect_for=2")
        run.wait_for(lambda: len(run.lines()) >= 15)
        server.kill()
        code = run.end()
    assert code == 2
    (lost, note), (gave_up, error) = run.stderr
    frame = run.lines()[-1]["frame"]
    assert note == (f"{server.url}: lost after frame {frame}: the server ended the stream; reconnecting for up to "
                    f"2 s (source.reconnect_for)")
    assert error == (f"fersr-stream: error: lost {server.url} after frame {frame}: the server ended the stream; no "
                     f"reconnect within 2 s (source.reconnect_for) (the last try: Connection refused)")
    assert 1.5 <= gave_up - lost <= 3.5
    assert len(_video_times(run.video)) == len(run.lines()) >= 15  # every frame written is in the video


@pytest.mark.slow
def test_ctrl_c_while_reconnecting_stops_at_once_with_the_outputs_finalized(clip, tmp_path):
    with _server("rtsp", clip) as server:
        run = Run(tmp_path, server.url)
        run.wait_for(lambda: len(run.lines()) >= 15)
        server.kill()
        run.wait_for(lambda: run.said("reconnecting for up to 60 s"))
        time.sleep(1)
        asked = time.monotonic()
        run.process.send_signal(signal.SIGINT)
        code = run.end()
    assert code == 130 and time.monotonic() - asked < 5, run.text()
    assert "stopped early" in run.text() and "stream: lost 1 time, reconnected 0 times" in run.text()
    assert len(_video_times(run.video)) == len(run.lines())


@pytest.mark.slow
def test_with_several_sources_a_stream_gone_for_good_fails_alone(clip, tmp_path):
    with _server("http", clip) as server:
        command = [sys.executable, "-m", "fersr_stream.cli.stream", "--source", server.url, "--source", clip,
                   "--jsonl", tmp_path / "{name}.jsonl", "--set", "source.reconnect_for=1"]
        run = subprocess.Popen(list(map(str, command)), stderr=subprocess.PIPE, text=True)
        stream = tmp_path / "127.0.0.1.jsonl"
        deadline = time.monotonic() + 60
        while not (stream.exists() and len(stream.read_text().splitlines()) >= 10):
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        server.kill()
        _, err = run.communicate(timeout=120)
    assert run.returncode == 2, err
    assert "127.0.0.1: stream: lost 1 time, reconnected 0 times" in err
    assert "127.0.0.1: failed after writing " in err and "no reconnect within 1 s (source.reconnect_for)" in err
    assert len((tmp_path / "clip.jsonl").read_text().splitlines()) == 12 * _FPS  # the file went on to its end
