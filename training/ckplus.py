"""Loader for the extended Cohn-Kanade dataset (CK+), in either of its two common layouts.

- The original release: ``cohn-kanade-images/S005/001/S005_001_00000011.png``, each sequence going from a neutral
  face to the peak of one expression (640 x 490 frames), with ``Emotion/S005/001/S005_001_00000011_emotion.txt``
  for the sequences that have a label (327 of 593): one number such as ``   3.0000000e+00``, 0 neutral, 1 anger,
  2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise. As usual for seven-class CK+ studies, the last
  three frames of a labelled sequence carry its emotion and its first frame is neutral; the frames between them,
  and the unlabelled sequences, are not used (and listed). The faces sit in full frames: ``faces.crop=auto``
  detects them.
- CK+48: ``CK+48/<anger|contempt|disgust|fear|happy|sadness|surprise>/S005_001_00000011.png``, the last three
  frames of each labelled sequence already cropped to 48 x 48 and used as they are. It holds no neutral faces, so
  a study on it has six emotions.

Contempt is not one of the seven emotions fersr classifies: its images are excluded, each one listed (the neutral
first frame of a contempt sequence is kept). The person is the subject (``S005``), so subject-independent folds
work; CK+ has no official split.
"""

from __future__ import annotations

import re
from pathlib import Path

from fersr_stream.classify.labels import Emotion
from fersr_stream.sources.images import is_image_path

from . import folders
from .dataset import Dataset, DatasetError, Issue, Sample, check_image, set_aside

# The original release's label codes; None: contempt.
CODES = {0: Emotion.NEUTRAL, 1: Emotion.ANGRY, 2: None, 3: Emotion.DISGUSTED, 4: Emotion.AFRAID, 5: Emotion.HAPPY,
         6: Emotion.SAD, 7: Emotion.SURPRISED}
CONTEMPT = "contempt, CK+'s eighth class, is not one of the seven emotions"
CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")  # CK+48's folders
PEAK = 3  # frames at the end of a sequence that carry its emotion
PERSON = re.compile(r"^(S\d+)_")
IMAGES, LABELS = "cohn-kanade-images", "Emotion"


def load(path: str | Path) -> Dataset:
    """Read CK+ from the folder holding ``cohn-kanade-images/`` and ``Emotion/``, or from ``CK+48`` (or the
    folder holding it)."""
    path = Path(path)
    if path.name == IMAGES:
        path = path.parent
    if (path / IMAGES).is_dir():
        return _load_sequences(path)
    for candidate in (path / "CK+48", path):
        if candidate.is_dir() and any(p.is_dir() and p.name.lower() in CLASSES for p in candidate.iterdir()):
            return folders.scan(candidate, {"contempt": None}, PERSON, "ckplus", CONTEMPT)
    raise DatasetError(f"{path} is not a CK+ folder: expected {IMAGES}/ and {LABELS}/ (the original release) "
                       "or CK+48/ with anger/, contempt/, ... folders")


def _load_sequences(root: Path) -> Dataset:
    """The original release: per labelled sequence its last :data:`PEAK` frames and, as neutral, its first."""
    if not (root / LABELS).is_dir():
        raise DatasetError(f"{root} has {IMAGES}/ but no {LABELS}/ folder with the emotion labels "
                           "(unpack Emotion_labels.zip beside it)")
    sequences, issues = _sequences(root)
    samples, unused = [], 0
    for sequence, frames in sequences.items():
        label, problem = _label(root, sequence)
        if problem:
            issues.append(Issue(sequence.relative_to(root).as_posix(), "excluded", problem))
            continue
        chosen = [(frames[0], Emotion.NEUTRAL)] if len(frames) > PEAK else []
        chosen += [(frame, label) for frame in frames[-PEAK:]]
        unused += max(len(frames) - PEAK - 1, 0)
        for frame, emotion in chosen:
            problem = CONTEMPT if emotion is None else check_image(frame)[0]
            if problem:
                issues.append(Issue(frame.relative_to(root).as_posix(), "excluded", problem))
                continue
            samples.append(Sample(key=frame.stem, path=frame, label=emotion, person=sequence.parent.name))
    if unused:
        issues.append(Issue(IMAGES, "excluded", f"{unused} frames of labelled sequences not used: only the first "
                                                f"(neutral) and the last {PEAK} (peak) of each are"))
    if not samples:
        raise DatasetError(f"no usable labelled CK+ frames in {root}{set_aside(issues)}")
    return Dataset(root, "ckplus", tuple(samples), tuple(issues), framing="portrait")


def _sequences(root: Path) -> tuple[dict[Path, list[Path]], list[Issue]]:
    """{sequence folder: its frames in order}, and an issue for every other file under ``cohn-kanade-images``."""
    sequences: dict[Path, list[Path]] = {}
    issues = []
    for file in sorted(p for p in (root / IMAGES).rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if len(file.relative_to(root / IMAGES).parts) != 3:
            issues.append(Issue(rel, "excluded", "not inside a sequence folder (S005/001/)"))
        elif not is_image_path(file):
            issues.append(Issue(rel, "excluded", "not an image file"))
        else:
            sequences.setdefault(file.parent, []).append(file)
    return sequences, issues


def _label(root: Path, sequence: Path) -> tuple[Emotion | None, str | None]:
    """(the sequence's emotion, None for contempt; None) or (None, why it has no usable label)."""
    folder = root / LABELS / sequence.relative_to(root / IMAGES)
    files = sorted(folder.glob("*_emotion.txt")) if folder.is_dir() else []
    if not files:
        return None, f"no emotion label in {LABELS}/ (CK+ labels 327 of its 593 sequences)"
    if len(files) > 1:
        return None, f"{len(files)} emotion label files in {folder.relative_to(root).as_posix()}"
    text = files[0].read_text().strip()
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value.is_integer() or int(value) not in CODES:
        return None, f"emotion label {text!r} in {files[0].relative_to(root).as_posix()} is not 0..7"
    return CODES[int(value)], None
