"""Loader for the Karolinska Directed Emotional Faces (KDEF) as distributed.

Layout: ``KDEF_and_AKDEF/KDEF/<AF01>/<AF01AFS.JPG>`` (the ``KDEF`` folder itself is accepted too). A name is
session (A/B), gender (F/M), id (01-35), emotion (AF AN DI HA NE SA SU) and angle (FL HL S HR FR; the straight
view has one letter). One person (gender + id) sits in two folders, one per session.

Known defects of the distribution, handled here and reported as issues:
- two misnamed files, ``AF31V.JPG`` (really AF31SAHL) and ``AM31H.JPG`` (really AM31SUHR);
- about ten near-black or corrupt images, found by content and excluded;
- two oversized images (970x633 instead of 562x762), kept and listed.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

from fersr_stream.classify.labels import Emotion
from fersr_stream.sources.images import is_image_path

from .dataset import Dataset, DatasetError, Issue, Sample, check_image, set_aside

NAME = re.compile(r"^(?P<session>[AB])(?P<gender>[FM])(?P<id>\d{2})"
                  r"(?P<emotion>AF|AN|DI|HA|NE|SA|SU)(?P<angle>FL|HL|S|HR|FR)$")
FOLDER = re.compile(r"^[AB][FM]\d{2}$")
MISNAMED = {"AF31V": "AF31SAHL", "AM31H": "AM31SUHR"}
# Written beside the KDEF folder of a tree that training.synthetic drew, so that what is trained on it says so.
SYNTHETIC_MARKER = "SYNTHETIC.txt"


def find_root(path: str | Path) -> Path:
    """The folder holding the ``AF01``-style person folders: ``path`` itself or ``path/KDEF``."""
    path = Path(path)
    if path.is_file():
        raise DatasetError(f"{path} is a file; give the dataset folder (KDEF, or KDEF_and_AKDEF above it)")
    if not path.is_dir():
        raise DatasetError(f"dataset folder not found: {path}")
    for candidate in (path, path / "KDEF"):
        if candidate.is_dir() and any(p.is_dir() and FOLDER.match(p.name.upper()) for p in candidate.iterdir()):
            return candidate
    raise DatasetError(f"{path} is not a KDEF folder: expected person folders like AF01/ holding AF01AFS.JPG "
                       "(or a KDEF_and_AKDEF folder holding KDEF/)")


def parse_name(stem: str) -> dict | None:
    """Split a KDEF file stem (any case) into its fields, or None when it is not a KDEF name."""
    match = NAME.match(stem.upper())
    return match.groupdict() if match else None


def load(path: str | Path, angles=("FL", "HL", "S", "HR", "FR"), sessions=("A", "B")) -> Dataset:
    """Scan a KDEF tree, fix the known misnamed files, exclude unusable images by content.

    Args:
        path: the KDEF folder or the KDEF_and_AKDEF folder above it.
        angles, sessions: which views and sessions to keep (others are left out without an issue).

    Returns:
        The dataset, samples sorted by canonical name; issues for every renamed, excluded or unusual file.
    """
    root = find_root(path)
    samples: dict[str, Sample] = {}
    sizes: dict[str, tuple[int, int]] = {}
    issues = [Issue(p.name, "excluded", "not inside a person folder") for p in sorted(root.iterdir()) if p.is_file()]
    for file in sorted(p for folder in root.iterdir() if folder.is_dir() for p in folder.iterdir()):
        rel = file.relative_to(root).as_posix()
        if not file.is_file():
            issues.append(Issue(rel, "excluded", "a folder inside a person folder"))
            continue
        if not is_image_path(file):
            issues.append(Issue(rel, "excluded", "not an image file"))
            continue
        stem = file.stem.upper()
        if stem in MISNAMED:
            issues.append(Issue(rel, "renamed", f"misnamed in the distribution; it is {MISNAMED[stem]}"))
            stem = MISNAMED[stem]
        fields = parse_name(stem)
        if fields is None:
            issues.append(Issue(rel, "excluded", "name does not follow KDEF naming (e.g. AF01AFS.JPG)"))
            continue
        if fields["angle"] not in angles or fields["session"] not in sessions:
            continue
        if stem in samples:
            issues.append(Issue(rel, "excluded", f"duplicate of {samples[stem].path.relative_to(root).as_posix()}"))
            continue
        problem, size = check_image(file)
        if problem:
            issues.append(Issue(rel, "excluded", problem))
            continue
        sizes[stem] = size
        samples[stem] = Sample(key=stem, path=file, label=Emotion.parse(fields["emotion"]),
                               person=fields["gender"] + fields["id"], session=fields["session"],
                               angle=fields["angle"])
    if sizes:
        # The usual size is the most common one (562x762 in KDEF; smaller in synthetic trees).
        usual = collections.Counter(sizes.values()).most_common(1)[0][0]
        for stem, size in sizes.items():
            if size != usual:
                rel = samples[stem].path.relative_to(root).as_posix()
                issues.append(Issue(rel, "kept", f"unusual size {size[1]}x{size[0]} (most are {usual[1]}x{usual[0]}); "
                                                 "fixed crops use a centred window of the usual aspect"))
    dataset = Dataset(root, "kdef", tuple(samples[k] for k in sorted(samples)), tuple(issues),
                      synthetic=(root.parent / SYNTHETIC_MARKER).is_file())
    if not dataset.samples:
        raise DatasetError(f"no usable KDEF images in {root} for angles {'/'.join(angles)} "
                           f"and sessions {'/'.join(sessions)}{set_aside(issues)}")
    return dataset
