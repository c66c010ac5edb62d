"""Per-frame results as JSON Lines: one object per frame, flushed per line, so the file is complete up to the
last written frame even when the run is killed.

Schema of a line::

    {"frame": 12,                 # Frame.index
     "file": "a12.png",           # image and folder sources only: the picture's file name
     "time": 0.48,                # seconds (pts * time_base), null when the source has no timestamps
     "faces": [{
        "box": [x1, y1, x2, y2],  # ints, source-frame pixels
        "score": 0.93,            # detector confidence
        "track": 3,               # track id, null before tracking
        "emotion": "happy",       # most probable label, null when not classified
        "confidence": 0.81,       # its probability, null when not classified
        "probs": {"afraid": .., "angry": .., "disgusted": .., "happy": .., "neutral": .., "sad": ..,
                  "surprised": ..},  # all 7 in Emotion order, null when not classified
        "restored": false}]}      # whether the enhancer ran (or was reused) for this face

Floats are rounded to 4 decimals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..classify.labels import LABELS
from ..errors import SinkError
from ..types import Faces, Frame
from .base import Sink, check_writable

_DIGITS = 4


def _face_records(faces: Faces) -> list[dict]:
    records = []
    for i in range(len(faces)):
        probs = None if faces.probs is None else [round(float(p), _DIGITS) for p in faces.probs[i]]
        best = None if probs is None else int(np.argmax(faces.probs[i]))
        track = int(faces.track_ids[i])
        records.append({
            "box": [int(round(float(v))) for v in faces.boxes[i]],
            "score": round(float(faces.scores[i]), _DIGITS),
            "track": track if track >= 0 else None,
            "emotion": None if best is None else LABELS[best],
            "confidence": None if best is None else probs[best],
            "probs": None if probs is None else dict(zip(LABELS, probs)),
            "restored": bool(faces.restored[i]) if faces.restored is not None else False,
        })
    return records


def frame_record(frame: Frame) -> dict:
    """The JSON object of one frame (see the module docstring)."""
    time = frame.time
    record = {"frame": frame.index} if frame.name is None else {"frame": frame.index, "file": frame.name}
    record.update(time=None if time is None else round(time, _DIGITS), faces=_face_records(frame.faces))
    return record


class JsonlSink(Sink):
    """Write :func:`frame_record` lines to ``path`` (UTF-8, ``\\n`` line ends), flushed after every frame.

    Raises:
        SinkError: unwritable path (checked on construction).
    """

    def __init__(self, path: str | Path):
        path = check_writable(path)
        try:
            self._file = open(path, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise SinkError(f"cannot write output: {path} ({exc.strerror or exc})") from None

    def write(self, frame: Frame) -> None:
        self._file.write(json.dumps(frame_record(frame)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
