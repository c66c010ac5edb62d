"""The choices benchmark: every comparison printed with positive timings, and the alternatives that must agree do."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fersr_stream.bench import choices

# a few words of each comparison's name, in the order the brief lists the choices
EXPECTED = ["shrink vs INTER_AREA", "crop: cv2 warp vs torch", "to_rgb vs swscale: wall", "to_rgb vs swscale: CPU",
            "cv2 I420 vs swscale: wall", "cv2 I420 vs swscale: CPU", "from_numpy_buffer vs from_ndarray",
            "x264 encode", "x264 encode", "H.264 decode", "H.264 decode", "classify per face: 4 a call",
            "channels_last vs contiguous", "traced vs eager, alone", "traced vs eager, beside a busy thread",
            "Haar: refine near"]


@pytest.fixture(scope="module")
def quick():
    """The CLI's output with --quick, and the rows it printed."""
    rows = []
    real = choices.run

    def keep(budget):
        rows.extend(real(budget))
        return rows

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(choices, "run", keep)
        result = CliRunner().invoke(choices.main, ["--quick"])
    assert result.exit_code == 0, result.output
    return result.output, {r.choice: r for r in rows}


def test_every_comparison_is_printed_with_positive_numbers(quick):
    output, rows = quick
    lines = output.splitlines()
    assert lines[0].startswith("machine: ") and " cores, " in lines[0]
    assert [cell.strip() for cell in lines[2].split(" | ")] == ["choice", "ours ms", "alternative ms", "ratio",
                                                               "results apart"]
    body = lines[4:]
    assert len(body) == len(rows) == len(EXPECTED)
    for line, words in zip(body, EXPECTED):
        choice, ours, other, ratio = (cell.strip() for cell in line.split(" | ")[:4])
        assert words in choice
        for cell in (ours, other):  # "median (min)"
            median, least = cell.split()
            assert float(median) > 0 and float(least.strip("()")) > 0, line
        assert ratio.endswith("x") and float(ratio[:-1]) > 0, line


def test_alternatives_that_must_agree_are_close(quick):
    _, rows = quick
    apart = {words: next(r.apart for name, r in rows.items() if words in name) for words in EXPECTED}
    assert apart["shrink vs INTER_AREA"]["mean"] < 3  # both average the frame; the bilinear step differs a little
    assert apart["crop: cv2 warp vs torch"]["mean"] < 0.5 and apart["crop: cv2 warp vs torch"]["max"] <= 8
    assert apart["to_rgb vs swscale: wall"]["mean"] < 2 and apart["to_rgb vs swscale: wall"]["max"] <= 16
    assert apart["cv2 I420 vs swscale: wall"]["mean"] < 1
    assert apart["from_numpy_buffer vs from_ndarray"]["max"] == 0
    assert abs(apart["x264 encode"]["size"]) < 10  # percent
    assert apart["H.264 decode"]["max"] == 0  # threads decode the same frames
    for words in ("classify per face: 4 a call", "channels_last vs contiguous", "traced vs eager, alone"):
        assert apart[words]["max"] < 1e-4, words
    assert apart["Haar: refine near"]["corner"] < 15  # px: the same face found


def test_ratio_is_the_median_of_the_rounds_own_ratios():
    row = choices.Row("x", ours=[1.0, 2.0, 10.0], other=[3.0, 2.0, 40.0])
    assert row.ratio == 3.0  # rounds: 3x, 1x, 4x
    text = choices.table([row]).splitlines()
    assert [cell.strip() for cell in text[2].split(" | ")[1:4]] == ["2.00 (1.00)", "3.00 (2.00)", "3.00x"]


def test_compare_interleaves_the_two():
    calls = []
    ours, other = choices.compare(lambda: calls.append("a"), lambda: calls.append("b"), choices.Budget(repeat=3), 2)
    assert "".join(calls) == "ab" + "aabb" + "bbaa" + "aabb"  # an untimed call each, then rounds in turn
    assert ours.shape == other.shape == (3, 2) and (ours >= 0).all()


def test_repeat_must_be_positive():
    result = CliRunner().invoke(choices.main, ["--repeat", "0"])
    assert result.exit_code == 2 and "--repeat" in result.output
