"""The one emotion vocabulary and its one canonical order (KDEF's codes).

Every probability vector in fersr is indexed by ``Emotion`` order: AF, AN, DI, HA, NE, SA, SU.
Datasets and checkpoints with another order are mapped explicitly with :func:`reorder`.
"""

from __future__ import annotations

import enum

import numpy as np


class Emotion(enum.IntEnum):
    """The seven basic emotions, in canonical order; the value is the column index."""

    AFRAID = 0
    ANGRY = 1
    DISGUSTED = 2
    HAPPY = 3
    NEUTRAL = 4
    SAD = 5
    SURPRISED = 6

    @property
    def code(self) -> str:
        """KDEF's two-letter code (AF, AN, DI, HA, NE, SA, SU)."""
        return KDEF_CODES[self.value]

    @property
    def label(self) -> str:
        """Lower-case English name used in JSONL records and overlays."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> "Emotion":
        """Accept a KDEF code, a name in any case, or FER2013's names (fear, surprise...)."""
        key = text.strip().upper()
        if key in KDEF_CODES:
            return cls(KDEF_CODES.index(key))
        key = _ALIASES.get(key, key)
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"unknown emotion {text!r}; expected one of {', '.join(e.label for e in cls)}") from None


KDEF_CODES = ("AF", "AN", "DI", "HA", "NE", "SA", "SU")
LABELS = tuple(e.label for e in Emotion)
_ALIASES = {"FEAR": "AFRAID", "ANGER": "ANGRY", "DISGUST": "DISGUSTED", "HAPPINESS": "HAPPY",
            "SADNESS": "SAD", "SURPRISE": "SURPRISED"}

# FER2013's class order (0=Angry, 1=Disgust, 2=Fear, 3=Happy, 4=Sad, 5=Surprise, 6=Neutral).
FER2013_ORDER = (Emotion.ANGRY, Emotion.DISGUSTED, Emotion.AFRAID, Emotion.HAPPY, Emotion.SAD,
                 Emotion.SURPRISED, Emotion.NEUTRAL)


def reorder(probs: np.ndarray, order: tuple[Emotion, ...]) -> np.ndarray:
    """Map columns given in ``order`` to canonical ``Emotion`` order.

    Args:
        probs: (N, 7) scores whose column j means ``order[j]``.
        order: the emotion of each input column.

    Returns:
        (N, 7) scores whose column i means ``Emotion(i)``.
    """
    if sorted(order) != list(Emotion):
        raise ValueError(f"order must name each of the 7 emotions once, got {order}")
    out = np.empty_like(probs)
    out[:, [int(e) for e in order]] = probs
    return out
