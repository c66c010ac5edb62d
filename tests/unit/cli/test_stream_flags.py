"""fersr-stream's flags: restoration flags that a run's settings leave without effect are warned of."""

from __future__ import annotations

import logging

from fersr_stream.cli.stream import resolve_config, warn_unused


def _warnings(caplog, flags: dict) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fersr"):
        warn_unused(resolve_config(None, (), flags), flags)
    return [r.getMessage() for r in caplog.records]


def test_restoration_flags_without_an_enhancer_are_warned_of(caplog):
    assert _warnings(caplog, {"paste": True, "reuse_every": 8}) == [
        "--reuse-every --paste: nothing is restored without --enhancer, so they do nothing"]
    assert _warnings(caplog, {"enhance_below": 40}) == [
        "--enhance-below: nothing is restored without --enhancer, so it does nothing"]
    assert _warnings(caplog, {"fidelity": 0.9, "enhancer": "bicubic"}) == [
        "--fidelity: only --enhancer codeformer takes it; bicubic does not"]
    assert _warnings(caplog, {"paste": None, "enhancer": None}) == []  # flags not given
    assert _warnings(caplog, {"fidelity": 0.9, "enhancer": "codeformer", "paste": True}) == []
