"""Loader for AffectNet in its commonly distributed form (images with one ``.npy`` label file each).

Layout: ``train_set/images/0.jpg`` with ``train_set/annotations/0_exp.npy`` (the expression; ``_aro``, ``_val``
and ``_lnd`` hold arousal, valence and landmarks, not read), and the same under ``val_set/``. Expressions:
0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt (8-10, none / uncertain / no face,
appear in the full release). AffectNet's test set is not public, so its validation set is the official test part
and a validation part is carved from the training set. Contempt is not one of the seven emotions fersr
classifies: its images are excluded, each one listed. The faces are already cropped and used as they are; the
images carry no person.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fersr_stream.classify.labels import Emotion
from fersr_stream.sources.images import is_image_path

from .dataset import Dataset, DatasetError, Issue, Sample, check_image, set_aside

LABELS = {0: Emotion.NEUTRAL, 1: Emotion.HAPPY, 2: Emotion.SAD, 3: Emotion.SURPRISED, 4: Emotion.AFRAID,
          5: Emotion.DISGUSTED, 6: Emotion.ANGRY}
NOT_EMOTIONS = {7: "contempt (7) is not one of the seven emotions", 8: "labelled none (8)",
                9: "labelled uncertain (9)", 10: "labelled no face (10)"}
SETS = {"train_set": "train", "val_set": "test"}  # folder -> official part


def find_root(path: str | Path) -> Path:
    """The folder holding ``train_set/`` and ``val_set/`` (at least one of them)."""
    path = Path(path)
    if any((path / name / "images").is_dir() for name in SETS):
        return path
    raise DatasetError(f"{path} is not an AffectNet folder: expected train_set/ and val_set/, each with images/ "
                       "and annotations/")


def load(path: str | Path) -> Dataset:
    """Read both sets; an image without a usable seven-emotion label, or unreadable, is excluded with an issue."""
    root = find_root(path)
    samples, issues = [], []
    for name in sorted(p.name for p in root.iterdir() if p.name not in SETS):
        issues.append(Issue(name, "excluded", f"not read: AffectNet's sets are {' and '.join(SETS)}"))
    for name, part in SETS.items():
        images = root / name / "images"
        if not images.is_dir():
            continue
        for file in sorted(p for p in images.iterdir() if p.is_file()):
            rel = file.relative_to(root).as_posix()
            label, reason = _label(root / name / "annotations" / f"{file.stem}_exp.npy", file)
            reason = reason or check_image(file)[0]
            if reason:
                issues.append(Issue(rel, "excluded", reason))
                continue
            samples.append(Sample(key=f"{name}/{file.stem}", path=file, label=label, part=part))
    if not samples:
        raise DatasetError(f"no usable AffectNet images in {root}{set_aside(issues)}")
    return Dataset(root, "affectnet", tuple(samples), tuple(issues), framing="face")


def _label(annotation: Path, image: Path) -> tuple[Emotion | None, str | None]:
    """(emotion, None), or (None, why the image is not used)."""
    if not is_image_path(image):
        return None, "not an image file"
    if not annotation.is_file():
        return None, f"no expression label ({annotation.parent.name}/{annotation.name} missing)"
    try:
        # a string array ('6') in the copies we know of; a number reads as well
        value = float(np.load(annotation).item())
    except (ValueError, TypeError, OSError, EOFError):
        return None, f"unreadable expression label {annotation.name}"
    if value.is_integer() and int(value) in LABELS:
        return LABELS[int(value)], None
    return None, NOT_EMOTIONS.get(int(value) if value.is_integer() else -1, f"expression label {value:g} is not 0..10")
