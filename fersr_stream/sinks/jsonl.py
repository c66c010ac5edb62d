"""Per-frame results as JSON Lines: one object per frame, written to the file as a whole line each, so the file is
complete up to the last written frame even when the run is killed (and synced to disk about once a second, see
:mod:`.durable`). The file is opened (and an earlier one replaced) with the first frame; a line that fails to be
written (a full disk) is cut off again, so the file always ends on a whole line.

Schema of a line::

    {"frame": 12,                 # Frame.index
     "file": "a12.png",           # image and folder sources only: the picture's file name
     "time": 0.48,                # seconds (pts * time_base), null when the source has no timestamps
     "faces": [{
        "box": [x1, y1, x2, y2],  # ints, source-frame pixels
        "score": 0.93,            # detector confidence
        "landmarks": [[x, y], ...],  # 5 points, source-frame pixels (1 decimal): the subject's right eye (on the
                                  # image's left), left eye, nose tip, right and left mouth corners, as the crop was
                                  # aligned to them (filtered per track); null from a detector without landmarks
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
from .durable import OutputFile
from .lock import OutputLock

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
            "landmarks": None if faces.landmarks is None else [[round(float(x), 1), round(float(y), 1)]
                                                               for x, y in faces.landmarks[i]],
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
    """Write :func:`frame_record` lines to ``path`` (UTF-8, ``\\n`` line ends), each handed to the file whole.

    Raises:
        SinkError: on construction, an unwritable path or an output another process is writing; on
            :meth:`write`, a line the disk refused (it is cut off again).
    """

    def __init__(self, path: str | Path):
        self._path = check_writable(path)
        self._lock = OutputLock(self._path)
        self._file = OutputFile(self._path)
        self._frames, self._failed = 0, False

    def write(self, frame: Frame) -> None:
        line = (json.dumps(frame_record(frame)) + "\n").encode()
        try:
            self._file.write(line)
            self._file.whole()
        except OSError as exc:
            self._failed = True
            self._file.cut()
            raise SinkError(f"cannot write {self._path}: {exc.strerror or exc} (it keeps the {self._frames} "
                            f"frames before)") from None
        self._frames += 1

    def close(self) -> None:
        try:
            self._file.close(sync=not self._failed)  # after a failure, the error is already told
        except OSError as exc:
            raise SinkError(f"cannot write {self._path}: {exc.strerror or exc}") from None
        finally:
            self._lock.release()
