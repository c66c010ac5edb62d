"""Loader for the Japanese Female Facial Expression database (JAFFE) as distributed.

Layout: ``jaffe/KA.AN1.39.tiff``, one 256 x 256 grey portrait per file: the model's initials (10 models), the
expression (AN angry, DI disgusted, FE afraid, HA happy, NE neutral, SA sad, SU surprised) with its take number,
and the image number. The initials are the person, so subject-independent folds work; there is no official split.
The face fills about half of the portrait, with hair and background around it: ``faces.crop=auto`` detects it.
"""

from __future__ import annotations

import re
from pathlib import Path

from fersr_stream.classify.labels import Emotion
from fersr_stream.sources.images import is_image_path

from .dataset import Dataset, DatasetError, Issue, Sample, check_image

NAME = re.compile(r"^(?P<person>[A-Z]{2})\.(?P<emotion>AN|DI|FE|HA|NE|SA|SU)(?P<take>\d+)\.(?P<number>\d+)$",
                  re.IGNORECASE)
EMOTIONS = {"AN": Emotion.ANGRY, "DI": Emotion.DISGUSTED, "FE": Emotion.AFRAID, "HA": Emotion.HAPPY,
            "NE": Emotion.NEUTRAL, "SA": Emotion.SAD, "SU": Emotion.SURPRISED}


def find_root(path: str | Path) -> Path:
    """The folder holding the images: ``path`` itself or ``path/jaffe``."""
    path = Path(path)
    for candidate in (path, path / "jaffe"):
        if candidate.is_dir() and any(NAME.match(p.stem) for p in candidate.iterdir() if p.is_file()):
            return candidate
    raise DatasetError(f"{path} is not a JAFFE folder: expected images named like KA.AN1.39.tiff "
                       "(give the jaffe folder or the one holding it)")


def load(path: str | Path) -> Dataset:
    """Read every JAFFE image; files that are not JAFFE images, or unusable, are excluded with an issue."""
    root = find_root(path)
    samples, issues = [], []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        match = NAME.match(file.stem)
        if not is_image_path(file):
            reason = "not an image file"
        elif not match:
            reason = "name does not follow JAFFE naming (e.g. KA.AN1.39.tiff)"
        else:
            reason = check_image(file)[0]
        if reason:
            issues.append(Issue(rel, "excluded", reason))
            continue
        samples.append(Sample(key=file.stem.upper(), path=file, label=EMOTIONS[match["emotion"].upper()],
                              person=match["person"].upper()))
    return Dataset(root, "jaffe", tuple(samples), tuple(issues), framing="portrait")
