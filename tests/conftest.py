"""Shared fixtures: real offline faces (scikit-image) and synthetic clips encoded in tmp_path."""

from __future__ import annotations

import contextlib
import signal

import numpy as np
import pytest

from fersr_stream.testing import synthetic


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: scikit-image's astronaut (NASA, public domain)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def astronaut_face(astronaut) -> np.ndarray:
    """A square RGB crop around the astronaut's face (Haar finds it at x=177, y=66, 95 px)."""
    return np.ascontiguousarray(astronaut[40:190, 150:300])


@pytest.fixture(scope="session")
def lfw_faces() -> np.ndarray:
    """(100, 25, 25) uint8 grayscale faces from scikit-image's lfw_subset (the first 100 images are faces)."""
    from skimage import data

    return (data.lfw_subset()[:100] * 255).round().astype(np.uint8)


@pytest.fixture()
def make_clip(tmp_path, astronaut_face):
    """Return a function writing a synthetic clip; it gives (path, ground-truth boxes (F, K, 4))."""

    def _make(name: str = "clip.mp4", n_faces: int = 1, **kwargs):
        path = tmp_path / name
        boxes = synthetic.write_clip(path, [astronaut_face] * n_faces, **kwargs)
        return path, boxes

    return _make


@pytest.fixture()
def file_size_limit():
    """Return a context manager under which this process cannot grow a file past ``nbytes``: writes beyond it
    fail with EFBIG, the way they fail on a full disk, without root or a small file system (POSIX only)."""
    resource = pytest.importorskip("resource", reason="RLIMIT_FSIZE is POSIX only")

    @contextlib.contextmanager
    def limit(nbytes: int):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the signal would end the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)

    return limit


@pytest.fixture()
def damage_packet():
    """Return a function that zeroes the payload of video packet ``index`` of a file (its 4-byte NAL length is
    kept), as a bad sector would."""
    import av

    def damage(path, index: int) -> None:
        with av.open(str(path)) as container:
            packet = [p for p in container.demux(video=0) if p.size][index]
            start, size = packet.pos, packet.size
        data = bytearray(path.read_bytes())
        data[start + 4:start + size] = bytes(size - 4)
        path.write_bytes(bytes(data))

    return damage


@pytest.fixture()
def damage_index():
    """Return a function that damages an MP4's index: every chunk offset points past the end of the file."""

    def damage(path) -> None:
        data = bytearray(path.read_bytes())
        box = data.find(b"stco") - 4  # size, type, version and flags, entry count, then the offsets
        size = int.from_bytes(data[box:box + 4], "big")
        data[box + 16:box + size] = b"\xff" * (size - 16)
        path.write_bytes(bytes(data))

    return damage
