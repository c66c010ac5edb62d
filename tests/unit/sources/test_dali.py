"""DALI source on the CPU: VP9 clips made with PyAV, decoded by DALI and compared with PyAV's decode of the file.

DALI's CPU decoder reads VP8, VP9 and MJPEG only (H.264 needs the GPU: see tests/gpu). Tests that run DALI skip
with a reason when it is not installed; the error paths that need no DALI always run.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from fersr_stream.testing import synthetic
from fersr_stream.config import SourceConfig
from fersr_stream.errors import ConfigError, SourceError
from fersr_stream.sources import open_source

needs_dali = pytest.mark.skipif(importlib.util.find_spec("nvidia.dali") is None,
                                reason="NVIDIA DALI is not installed (pip install -e '.[dali]')")
DALI = SourceConfig(decoder="dali")


def _decode_both(path, **dali_kwargs):
    """(PyAV source info, PyAV frames, DALI source info, DALI frames) of ``path``, DALI decoding on the CPU."""
    from fersr_stream.sources.dali import DaliSource

    with open_source(str(path)) as source:
        info, frames = source.info, list(source)
    with DaliSource(path, device="cpu", **dali_kwargs) as source:
        dali_info, dali_frames = source.info, list(source)
    return info, frames, dali_info, dali_frames


@needs_dali
@pytest.mark.parametrize("name", ["clip.webm", "clip.mkv"])
def test_vp9_frames_match_pyav(make_clip, name, astronaut_face):
    path, boxes = make_clip(name, n_frames=19, width=320, height=240, fps=10, codec="libvpx-vp9")
    info, frames, dali_info, dali_frames = _decode_both(path, sequence=8)  # 19 = 8 + 8 + a padded tail of 3
    assert dali_info == info  # probed with PyAV, so filled the same way
    assert len(dali_frames) == len(frames) == 19
    assert [f.index for f in dali_frames] == list(range(19))
    assert [f.pts for f in dali_frames] == [f.pts for f in frames]
    assert all(f.time_base == info.time_base for f in dali_frames)
    assert dali_frames[5].time == pytest.approx(0.5)
    for ours, ref in zip(dali_frames, frames):
        assert ours.image.shape == (240, 320, 3) and ours.image.dtype == np.uint8
        # DALI's YUV->RGB differs from swscale's by a level or two, more on sharp chroma edges
        assert np.abs(ours.image.astype(int) - ref.image).mean() < 2.5
    # RGB, not BGR: the decoded frame is close to the rendered one (channels differ, so a swap would show)
    rendered = next(synthetic.render([astronaut_face], boxes[:1], 320, 240, 10))
    error = np.abs(dali_frames[0].image.astype(int) - rendered).mean()
    swapped = np.abs(dali_frames[0].image[..., ::-1].astype(int) - rendered).mean()
    assert error < 5 and swapped > 4 * error
    # frames stay valid after later decode runs, and stages may draw on them
    assert dali_frames[0].image.flags.writeable


@needs_dali
def test_variable_timing_and_late_start_keep_pyav_pts(tmp_path, caplog):
    path, stamps = tmp_path / "vfr.mkv", [500, 600, 650, 800, 1000, 1010, 1200]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, pts in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with caplog.at_level(logging.WARNING, logger="fersr"):
        info, frames, dali_info, dali_frames = _decode_both(path, sequence=3)
    assert "truncated" not in caplog.text  # gaps in the timing are not a short file
    assert [f.pts for f in frames] == stamps  # the reference itself
    assert [f.pts for f in dali_frames] == stamps
    assert [int(f.image.mean()) for f in dali_frames] == pytest.approx([30 * i for i in range(7)], abs=3)


@needs_dali
def test_iter_tensors_gives_batches_of_the_same_frames(make_clip):
    from fersr_stream.sources.dali import DaliSource

    path, _ = make_clip("clip.webm", n_frames=10, codec="libvpx-vp9")
    with DaliSource(path, device="cpu", sequence=4) as source:
        batches = list(source.iter_tensors())
    with DaliSource(path, device="cpu", sequence=4) as source:
        frames = list(source)
    assert [len(b.indices) for b in batches] == [4, 4, 2]
    assert [i for b in batches for i in b.indices] == list(range(10))
    assert [p for b in batches for p in b.pts] == [f.pts for f in frames]
    for batch in batches:
        images = batch.images
        assert images.dtype == torch.uint8 and images.device.type == "cpu"
        assert images.shape == (len(batch.indices), 240, 320, 3)
    stacked = torch.cat([b.images for b in batches]).numpy()
    np.testing.assert_array_equal(stacked, np.stack([f.image for f in frames]))


@needs_dali
def test_open_source_picks_dali_for_a_file(make_clip):
    from fersr_stream.sources.dali import DaliSource

    path, _ = make_clip("clip.webm", n_frames=3, codec="libvpx-vp9")
    with open_source(str(path), DALI, device="cpu") as source:
        assert isinstance(source, DaliSource)
        assert len(list(source)) == 3


@needs_dali
def test_h264_on_the_cpu_is_a_one_line_error(make_clip):
    path, _ = make_clip("clip.mp4", n_frames=3)
    with pytest.raises(SourceError, match=r"DALI decodes h264 .* on the GPU only.*source\.decoder=pyav") as error:
        open_source(str(path), DALI, device="cpu")
    assert "\n" not in str(error.value)


@needs_dali
def test_truncated_file_yields_what_decodes_and_warns(make_clip, caplog):
    path, _ = make_clip("clip.webm", n_frames=30, codec="libvpx-vp9")
    data = path.read_bytes()
    cut = path.with_name("cut.webm")
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="fersr"), open_source(str(cut), DALI, device="cpu") as source:
        frames = list(source)
    assert 0 < len(frames) < 30
    assert [f.index for f in frames] == list(range(len(frames)))
    assert "truncated" in caplog.text


@pytest.mark.parametrize("uri, reason", [("cam0", "cameras"), ("rtsp://127.0.0.1:1/x", "network streams"),
                                         ("FOLDER", "folders"), ("IMAGE", "images")])
def test_dali_reads_files_only(tmp_path, uri, reason):
    image = tmp_path / "a.png"
    image.write_bytes(b"")  # never opened: the extension decides
    uri = {"FOLDER": str(tmp_path), "IMAGE": str(image)}.get(uri, uri)
    with pytest.raises(SourceError, match=f"reads video files only, not .*{reason}.*source.decoder=pyav"):
        open_source(uri, DALI)


def test_missing_file_and_unknown_decoder(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "none.webm"), DALI)
    with pytest.raises(ConfigError, match="unknown source.decoder 'nvdec'"):
        open_source(str(tmp_path / "none.webm"), SourceConfig(decoder="nvdec"))


def test_missing_dali_is_a_one_line_install_hint(make_clip, monkeypatch):
    path, _ = make_clip("clip.webm", n_frames=2, codec="libvpx-vp9")
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # makes the import fail as if not installed
    with pytest.raises(SourceError) as error:
        open_source(str(path), DALI)
    assert str(error.value) == "source.decoder=dali needs NVIDIA DALI: pip install -e '.[dali]'"


def test_dali_errors_are_cut_to_the_line_that_names_the_problem():
    from fersr_stream.sources.dali import _dali_reason

    message = ("Critical error when building pipeline:\nError in CPU operator `nvidia.dali.fn.experimental.readers"
               ".video`,\nwhich was used in the pipeline definition with the following traceback:\n\n  File \"x.py\", "
               "line 5, in pipe\n\nencountered:\n\nAssert on \"num_shards_ <= Size()\" failed: no input samples\n"
               "C++ context: [loader.h:375] \nCurrent pipeline object is no longer valid.")
    assert _dali_reason(RuntimeError(message)) == 'Assert on "num_shards_ <= Size()" failed: no input samples'
    assert _dali_reason(RuntimeError("one\ntwo")) == "two"
