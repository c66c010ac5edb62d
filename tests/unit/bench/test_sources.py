"""The many-sources benchmark (bench/sources.py) end to end on a tiny clip: a row per count, both modes scored."""

from __future__ import annotations

import re

from click.testing import CliRunner

from fersr_stream.bench import sources


def test_the_benchmark_compares_shared_and_separate_runs_with_recall():
    result = CliRunner().invoke(sources.main, ["--counts", "1,2", "--frames", "10", "--width", "160", "--height",
                                               "120"])
    assert result.exit_code == 0, result.output
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)"
                      r"\s+([\d.]+)\s+([\d.]+)$", result.output, re.M)
    assert [int(r[0]) for r in rows] == [1, 2]
    for row in rows:
        assert float(row[1]) > 0 and float(row[5]) > 0
        assert 0 < float(row[4]) == float(row[8])  # sharing the stages finds each source's faces as alone


def test_a_bad_count_list_is_a_usage_error():
    result = CliRunner().invoke(sources.main, ["--counts", "1,x"])
    assert result.exit_code == 2 and "expected comma-separated integers" in result.output
