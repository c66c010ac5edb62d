"""Counts in messages, in words: ``1 frame``, ``2 frames``."""

from __future__ import annotations


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, with an ``s`` unless ``n`` is 1 (fersr's nouns all take one)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
