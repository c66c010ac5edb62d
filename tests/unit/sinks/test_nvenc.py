"""Hardware encode choice: ``output.codec`` auto | libx264 | h264_nvenc, with the fallback to libx264 when NVENC
does not open (always here: no GPU). The NVENC encode itself is checked in tests/gpu."""

from __future__ import annotations

import logging
from fractions import Fraction

import av
import numpy as np
import pytest

from fersr_stream.config import OutputConfig
from fersr_stream.errors import SinkError
from fersr_stream.sinks import open_sink
from fersr_stream.sinks import video
from fersr_stream.sources import SourceInfo
from fersr_stream.types import Frame

INFO = SourceInfo(width=64, height=48, fps=10.0, time_base=Fraction(1, 1000), frame_count=None, live=False,
                  path=None)


@pytest.fixture()
def no_nvenc():
    if video.nvenc_opens(INFO.width, INFO.height):
        pytest.skip("h264_nvenc opens on this machine: the fallback cannot be seen (tests/gpu covers NVENC)")


def _write(path, output: OutputConfig, n: int = 6) -> str:
    """Write ``n`` frames through open_sink; returns the encoder the sink used."""
    with open_sink(str(path), INFO, output) as sink:
        for i in range(n):
            image = np.full((48, 64, 3), (40 * i, 120, 200), np.uint8)
            sink.write(Frame(i, image, pts=100 * i, time_base=INFO.time_base))
    return sink.codec


def _decoded(path) -> tuple[str, list]:
    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.name, list(container.decode(video=0))


def test_probe_says_no_and_is_cached(no_nvenc):
    video.nvenc_opens.cache_clear()
    assert not video.nvenc_opens(64, 48)
    assert not video.nvenc_opens(64, 48)
    assert video.nvenc_opens.cache_info().hits == 1


@pytest.mark.parametrize("codec, level", [("auto", logging.INFO), ("h264_nvenc", logging.WARNING)])
def test_falls_back_to_libx264_with_a_notice(tmp_path, caplog, no_nvenc, codec, level):
    with caplog.at_level(logging.INFO, logger="fersr"):
        used = _write(tmp_path / "out.mp4", OutputConfig(codec=codec))
    assert used == "libx264"
    notices = [r for r in caplog.records if "h264_nvenc" in r.getMessage()]
    assert len(notices) == 1 and notices[0].levelno == level
    assert "encoding with libx264" in notices[0].getMessage() and "\n" not in notices[0].getMessage()
    name, frames = _decoded(tmp_path / "out.mp4")
    assert name == "h264" and len(frames) == 6
    # the colours survived (RGB in, RGB out): blue channel high, green mid
    pixel = frames[3].to_ndarray(format="rgb24")[24, 32].astype(int)
    assert np.abs(pixel - (120, 120, 200)).max() < 12


def test_libx264_and_webm_do_not_probe(tmp_path, caplog, monkeypatch):
    def fail(*_):
        raise AssertionError("NVENC probed for a codec that does not need it")

    monkeypatch.setattr(video, "nvenc_opens", fail)
    with caplog.at_level(logging.INFO, logger="fersr"):
        assert _write(tmp_path / "a.mp4", OutputConfig(codec="libx264")) == "libx264"
        assert _write(tmp_path / "b.webm", OutputConfig(codec="auto")) == "libvpx-vp9"
    assert "h264_nvenc" not in caplog.text
    assert _decoded(tmp_path / "b.webm")[0] == "vp9"


@pytest.mark.parametrize("codec", ["auto", "h264_nvenc"])
def test_nvenc_is_chosen_when_it_opens(monkeypatch, caplog, codec):
    monkeypatch.setattr(video, "nvenc_opens", lambda width, height: (width, height) == (1280, 720))
    with caplog.at_level(logging.INFO, logger="fersr"):
        assert video.resolve_codec(codec, 1280, 720) == "h264_nvenc"
    assert not caplog.records
    assert video.resolve_codec(codec, 64, 48) == "libx264"  # a size this NVENC refuses
    assert video.resolve_codec("libx265", 1280, 720) == "libx265"


def test_nvenc_options_are_constant_quality_with_mapped_presets():
    options = video._encoder_options("h264_nvenc", 23, "veryfast")
    assert options == {"rc": "vbr", "cq": "23", "b": "0", "preset": "p2", "tune": "hq"}
    assert video._encoder_options("h264_nvenc", 0, "veryslow")["cq"] == "1"  # cq 0 would mean "encoder picks"
    assert video._encoder_options("h264_nvenc", 51, "ultrafast")["preset"] == "p1"
    with pytest.raises(SinkError, match="unknown preset"):
        video._encoder_options("h264_nvenc", 23, "p4")
    with pytest.raises(SinkError, match="output.crf 52 out of range for h264_nvenc"):
        video._encoder_options("h264_nvenc", 52, "fast")
    with pytest.raises(SinkError, match="unsupported video codec 'nvenc'; use one of auto, libx264"):
        video._encoder_options("nvenc", 23, "fast")
