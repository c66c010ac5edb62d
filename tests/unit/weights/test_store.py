"""The weights cache against a local HTTP server that can honour Range, cut connections short, or lie."""

from __future__ import annotations

import hashlib
import os
import random
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fersr_stream import filelock
from fersr_stream.errors import WeightsError
from fersr_stream.weights import registry, store
from fersr_stream.weights.registry import WeightSpec

DATA = random.Random(0).randbytes(64 * 1024)
NAME = "test.tiny"


class _Quiet(ThreadingHTTPServer):
    """A threading server that does not print the tracebacks of clients hanging up (tests do that on purpose)."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer:
    """Serves ``DATA`` at ``/tiny.pth`` on 127.0.0.1; the attributes switch its behaviour per test.

    Attributes:
        ranges: honour ``Range`` requests with 206 (else always answer 200 with the whole file).
        drops: how many of the next responses stop after half their body and close the connection.
        body: what is served (defaults to DATA; tests swap in wrong bytes).
        stall: seconds to wait after the headers before sending the body.
        midway: called after half of an uncut body has been sent.
        requests: the Range header of each request received (None when absent).
    """

    def __init__(self):
        self.ranges = True
        self.drops = 0
        self.body = DATA
        self.stall = 0.0
        self.midway = None
        self.requests: list[str | None] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append(self.headers.get("Range"))
                if self.path != "/tiny.pth":
                    self.send_error(404)
                    return
                body, start = fake.body, 0
                asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if asked and fake.ranges:
                    start = int(asked.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                time.sleep(fake.stall)
                payload = body[start:]
                half = len(payload) // 2
                self.wfile.write(payload[:half])
                self.wfile.flush()
                if fake.drops:
                    fake.drops -= 1
                    self.close_connection = True
                    return
                if fake.midway:
                    fake.midway()
                self.wfile.write(payload[half:])

            def log_message(self, *args):
                pass

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    fake = FakeServer()
    yield fake
    fake.close()


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """An empty cache, online, no mirror, and 1 KiB chunks so transfers take many reads."""
    monkeypatch.setenv("FERSR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FERSR_OFFLINE", raising=False)
    monkeypatch.delenv("FERSR_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setattr(store, "_CHUNK", 1024)
    return tmp_path / "home"


@pytest.fixture()
def tiny(server, home, monkeypatch) -> WeightSpec:
    """A registry entry for DATA, served by ``server``."""
    spec = WeightSpec(NAME, (f"{server.url}/tiny.pth",), hashlib.sha256(DATA).hexdigest(), len(DATA), "MIT",
                      "restorer")
    monkeypatch.setitem(registry.REGISTRY, NAME, spec)
    return spec


def _part(name: str = NAME) -> Path:
    final = store.path(name)
    return final.with_name(final.name + ".part")


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/tiny.pth"


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("FERSR_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert store.cache_dir() == tmp_path / "user" / ".cache" / "fersr"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert store.cache_dir() == tmp_path / "user" / ".cache" / "fersr"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_dir() == tmp_path / "xdg" / "fersr"
    monkeypatch.setenv("FERSR_HOME", str(tmp_path / "fh"))
    assert store.cache_dir() == tmp_path / "fh"
    assert store.path("gfpgan.v1_4") == tmp_path / "fh" / "weights" / "gfpgan.v1_4" / "GFPGANv1.4.pth"
    assert not (tmp_path / "fh").exists()


def test_download_writes_checked_file_atomically(server, tiny):
    final = store.path(NAME)
    seen = {}

    def midway():
        # Wait until the client has written some of the body, then look at the cache.
        deadline = time.monotonic() + 5
        while not (_part().exists() and _part().stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.update(part=_part().exists() and _part().stat().st_size, final=final.exists())

    server.midway = midway
    assert store.download(NAME, quiet=True) == final
    assert seen["part"] > 0 and seen["final"] is False
    assert final.read_bytes() == DATA
    assert not _part().exists()
    assert server.requests == [None]


def test_cached_file_is_not_downloaded_again_unless_forced(server, tiny):
    store.download(NAME, quiet=True)
    store.download(NAME, quiet=True)
    assert store.ensure(NAME) == store.path(NAME)
    assert server.requests == [None]
    store.download(NAME, force=True, quiet=True)
    assert server.requests == [None, None]


def test_resumes_within_one_call(server, tiny):
    server.drops = 1
    assert store.download(NAME, quiet=True).read_bytes() == DATA
    assert server.requests == [None, f"bytes={len(DATA) // 2}-"]


def test_resumes_after_an_interrupted_call(server, tiny, monkeypatch):
    monkeypatch.setattr(store, "_RESUMES", 0)
    server.drops = 1
    with pytest.raises(WeightsError, match="kept for resuming"):
        store.download(NAME, quiet=True)
    assert not store.path(NAME).exists()
    assert _part().read_bytes() == DATA[: len(DATA) // 2]

    assert store.download(NAME, quiet=True).read_bytes() == DATA
    assert server.requests == [None, f"bytes={len(DATA) // 2}-"]
    assert not _part().exists()


def test_restarts_cleanly_when_range_is_unsupported(server, tiny):
    server.ranges = False
    server.drops = 1
    assert store.download(NAME, quiet=True).read_bytes() == DATA
    # The retry asked for the rest, got the whole file with 200, and started over instead of appending.
    assert server.requests == [None, f"bytes={len(DATA) // 2}-"]


@pytest.mark.parametrize("body", [bytes(len(DATA)), DATA + b"x"], ids=["wrong-bytes", "wrong-size"])
def test_wrong_content_is_refused_and_not_kept(server, tiny, body):
    server.body = body
    with pytest.raises(WeightsError) as info:
        store.download(NAME, quiet=True)
    assert ("sha256" in str(info.value)) == (len(body) == len(DATA))
    assert not store.path(NAME).exists()
    assert not _part().exists()


def test_a_stale_part_that_does_not_match_is_discarded(server, tiny):
    part = _part()
    part.parent.mkdir(parents=True)
    part.write_bytes(bytes(1000))  # not a prefix of DATA
    with pytest.raises(WeightsError, match="sha256"):
        store.download(NAME, quiet=True)
    assert not part.exists()
    assert store.download(NAME, quiet=True).read_bytes() == DATA


def test_tries_each_url_in_turn(server, tiny):
    urls = (f"{server.url}/missing.pth", f"{server.url}/tiny.pth")
    assert store.download(NAME, quiet=True, urls=urls).read_bytes() == DATA
    with pytest.raises(WeightsError) as info:
        store.download(NAME, quiet=True, force=True, urls=(f"{server.url}/missing.pth", _closed_port_url()))
    message = str(info.value)
    assert "HTTP 404" in message and "refused" in message.lower()


def test_network_failure_names_the_fix(tiny):
    with pytest.raises(WeightsError) as info:
        store.download(NAME, quiet=True, urls=(_closed_port_url(),))
    message = str(info.value)
    assert "\n" not in message
    assert "fersr-models download" not in message  # the download just failed: the way left is by hand
    assert tiny.urls[0] in message and f"fersr-models import FILE --as {NAME}" in message
    assert str(store.path(NAME)) in message


def test_stalled_server_times_out(server, tiny):
    server.stall = 3.0
    start = time.monotonic()
    with pytest.raises(WeightsError, match="timed out"):
        store.download(NAME, quiet=True, timeout=0.3)
    assert time.monotonic() - start < 2.5


def test_offline_error_names_command_and_path(server, tiny, monkeypatch):
    monkeypatch.setenv("FERSR_OFFLINE", "1")
    for call in (lambda: store.ensure(NAME), lambda: store.download(NAME)):
        with pytest.raises(WeightsError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert "FERSR_OFFLINE" in message
        assert f"fersr-models download {NAME}" in message
        assert tiny.urls[0] in message and f"fersr-models import FILE --as {NAME}" in message
        assert str(store.path(NAME)) in message
    assert server.requests == []


def test_ensure_without_download_names_the_fix(server, tiny):
    with pytest.raises(WeightsError, match=f"not cached; run `fersr-models download {NAME}`"):
        store.ensure(NAME, download=False)
    assert server.requests == []


def test_ensure_downloads_through_mirror(server, home, monkeypatch):
    spec = WeightSpec(NAME, ("https://example.invalid/some/path/tiny.pth",), hashlib.sha256(DATA).hexdigest(),
                      len(DATA), "MIT", "restorer")
    monkeypatch.setitem(registry.REGISTRY, NAME, spec)
    monkeypatch.setenv("FERSR_WEIGHTS_MIRROR", server.url + "/")
    assert store.ensure(NAME, download=True, quiet=True).read_bytes() == DATA
    assert server.requests == [None]
    monkeypatch.setenv("FERSR_WEIGHTS_MIRROR", server.url + "/elsewhere")
    with pytest.raises(WeightsError, match=f"check the mirror FERSR_WEIGHTS_MIRROR={server.url}/elsewhere"):
        store.download(NAME, force=True, quiet=True)
    monkeypatch.setenv("FERSR_WEIGHTS_MIRROR", "no-scheme.example")
    with pytest.raises(WeightsError, match="FERSR_WEIGHTS_MIRROR must be a URL"):
        store.download(NAME, force=True)


def test_ensure_with_a_path_or_an_unknown_name(tmp_path, home):
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"anything")
    assert store.ensure(str(weights)) == weights
    with pytest.raises(WeightsError, match="folder"):
        store.ensure(str(tmp_path))
    for missing in ("nothing.pth", "files/nothing", str(tmp_path / "nothing.onnx")):  # paths, not names
        with pytest.raises(WeightsError, match=f"^weights file not found: {re.escape(missing)}$"):
            store.ensure(missing)
    with pytest.raises(WeightsError, match="did you mean gfpgan.v1_4"):
        store.ensure("gfpgan.v1.4")
    with pytest.raises(WeightsError, match="did you mean codeformer.v0_1[?]$"):  # only names of that architecture
        store.ensure("codeformer.v1", arch="codeformer")


def test_a_registry_name_wins_over_a_same_named_file(tmp_path, home, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("yunet.2023mar").write_bytes(b"not the registry file")
    with pytest.raises(WeightsError, match="yunet.2023mar are not cached"):
        store.ensure("yunet.2023mar")


def test_a_name_of_another_architecture_is_refused_before_any_download(server, tiny, monkeypatch):
    monkeypatch.setenv("FERSR_WEIGHTS_MIRROR", server.url)
    with pytest.raises(WeightsError, match="^retinaface.mobilenet0_25 holds retinaface weights, not yunet; "
                                           "give yunet.2023mar, or a file$"):
        store.ensure("retinaface.mobilenet0_25", download=True, arch="yunet")
    assert server.requests == []
    assert store.ensure(NAME, download=True, quiet=True, arch="test").read_bytes() == DATA


def test_loaders_never_download_and_fetch_does(server, home, monkeypatch):
    """Constructors and loaders only look in the cache; detect.fetch / enhance.fetch (what the stream and the
    study call before building anything) download."""
    from fersr_stream import detect, enhance
    from fersr_stream.config import DetectConfig, EnhanceConfig

    monkeypatch.setenv("FERSR_WEIGHTS_MIRROR", server.url)
    for name in ("yunet.2023mar", "retinaface.resnet50", "gfpgan.v1_4"):  # each served as tiny.pth
        spec = registry.get(name)
        monkeypatch.setitem(registry.REGISTRY, name, WeightSpec(
            name, (f"https://example.invalid/{name}/tiny.pth",), hashlib.sha256(DATA).hexdigest(), len(DATA),
            spec.licence, spec.kind))
    builds = [lambda: detect.create(DetectConfig(name="yunet")),
              lambda: detect.create(DetectConfig(name="retinaface"), "cpu"),
              lambda: enhance.create(EnhanceConfig(name="gfpgan"), "cpu")]
    for build in builds:
        with pytest.raises(WeightsError, match="are not cached; run `fersr-models download"):
            build()
    assert server.requests == []

    with pytest.raises(Exception, match="detect_width"):  # settings are checked before anything is fetched
        detect.fetch(DetectConfig(name="yunet", detect_width=0))
    assert server.requests == []
    detect.fetch(DetectConfig(name="yunet"), quiet=True)
    detect.fetch(DetectConfig(name="retinaface"), quiet=True)
    enhance.fetch(EnhanceConfig(name="gfpgan"), quiet=True)
    detect.fetch(DetectConfig(name="haar"))
    enhance.fetch(EnhanceConfig(name="bicubic"))
    assert len(server.requests) == 3
    for name in ("yunet.2023mar", "retinaface.resnet50", "gfpgan.v1_4"):
        assert store.path(name).read_bytes() == DATA


def test_two_downloads_of_one_file_take_turns(server, tiny):
    """A second download of the same file waits for the first (no shared .part written twice), then finds it."""
    results = {}

    def second():
        results["second"] = store.download(NAME, quiet=True)

    other = threading.Thread(target=second)

    def midway():  # the first download is half way: start the second one and give it time to collide
        other.start()
        time.sleep(0.5)

    server.midway = midway
    assert store.download(NAME, quiet=True).read_bytes() == DATA
    other.join(10)
    assert results["second"] == store.path(NAME) and store.path(NAME).read_bytes() == DATA
    assert server.requests == [None]  # the second one found the file in place
    assert store.verify(NAME)


def test_stamp_spares_rehashing(server, tiny, monkeypatch):
    final = store.download(NAME, quiet=True)
    calls = []
    real = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", lambda p: calls.append(p) or real(p))

    store.ensure(NAME)
    store.ensure(NAME)
    assert calls == []

    later = final.stat().st_mtime_ns + 10**9
    os.utime(final, ns=(later, later))
    store.ensure(NAME)
    store.ensure(NAME)
    assert calls == [final]

    final.write_bytes(bytes(len(DATA)))  # same size, other bytes, new mtime
    with pytest.raises(WeightsError, match="sha256.*--force"):
        store.ensure(NAME)
    monkeypatch.setenv("FERSR_OFFLINE", "1")  # then the fix is a download after unsetting it, or an import
    with pytest.raises(WeightsError, match="sha256.*; unset FERSR_OFFLINE and run `fersr-models download "
                                           f"{NAME} --force`, or .* `fersr-models import FILE --as {NAME}`"):
        store.ensure(NAME)
    with pytest.raises(WeightsError, match=f"^weights {NAME} cannot be downloaded again and FERSR_OFFLINE is set"):
        store.download(NAME, force=True)
    monkeypatch.delenv("FERSR_OFFLINE")
    with pytest.raises(WeightsError, match="sha256"):
        store.verify(NAME)


def test_verify(server, tiny):
    assert store.verify(NAME) is False
    final = store.download(NAME, quiet=True)
    assert store.verify(NAME) is True
    final.write_bytes(DATA[:-1])
    with pytest.raises(WeightsError, match="bytes"):
        store.verify(NAME)
    # download replaces a bad cached copy without being forced
    assert store.download(NAME, quiet=True).read_bytes() == DATA


def test_import_checks_the_hash(tmp_path, tiny):
    final = store.path(NAME)
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(bytes(len(DATA)))
    with pytest.raises(WeightsError, match="nothing was imported"):
        store.import_file(wrong, NAME)
    short = tmp_path / "short.pth"
    short.write_bytes(DATA[:100])
    with pytest.raises(WeightsError, match="bytes"):
        store.import_file(short, NAME)
    with pytest.raises(WeightsError, match="no such file"):
        store.import_file(tmp_path / "absent.pth", NAME)
    assert not final.exists()
    assert not final.parent.exists() or list(final.parent.iterdir()) == []  # no lock file left either

    _part().write_bytes(DATA[:10])  # an earlier interrupted download
    right = tmp_path / "right.pth"
    right.write_bytes(DATA)
    assert store.import_file(right, NAME) == final
    assert final.read_bytes() == DATA
    assert sorted(p.name for p in final.parent.iterdir()) == ["tiny.pth", "tiny.pth.sha256"]


def test_a_second_process_waits_for_the_lock_then_the_lock_file_is_removed(tmp_path, tiny):
    right = tmp_path / "right.pth"
    right.write_bytes(DATA)
    lock = store.path(NAME).with_name("tiny.pth.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    held = filelock.acquire(lock, wait=False)  # another process fetching it (flock: one per open file)
    done = threading.Event()
    importer = threading.Thread(target=lambda: (store.import_file(right, NAME), done.set()), daemon=True)
    importer.start()
    assert not done.wait(0.5)  # it waits
    filelock.release(held, lock)
    importer.join(10)
    assert done.is_set() and store.path(NAME).read_bytes() == DATA and not lock.exists()


def test_sha256_file(tmp_path):
    file = tmp_path / "f"
    file.write_bytes(DATA)
    assert store.sha256_file(file) == hashlib.sha256(DATA).hexdigest()
