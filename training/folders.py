"""Loader for other emotion datasets laid out one folder per class (``root/happy/*.png``, ``root/HA/...``).

Folder names are read with :meth:`Emotion.parse` (KDEF codes, English names, FER2013 names). Without a person
regex every image is its own person, so only the image-level protocol applies.
"""

from __future__ import annotations

import re
from pathlib import Path

from fersr_stream.classify.labels import Emotion

from .dataset import Dataset, DatasetError, Issue, Sample, check_image, is_image


def load(path: str | Path, person_regex: str | None = None) -> Dataset:
    """Scan ``path/<emotion>/**/<image>``.

    Args:
        person_regex: a regex searched in each file name whose first group is the person id; files it does not
            match are excluded with an issue.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    try:
        pattern = re.compile(person_regex) if person_regex else None
    except re.error as exc:
        raise DatasetError(f"data.person_regex {person_regex!r} is not a valid regex: {exc}") from None
    classes = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            classes[folder] = Emotion.parse(folder.name)
        except ValueError:
            continue
    if not classes:
        raise DatasetError(f"{root} has no emotion folders: expected one folder per class, e.g. happy/, "
                           f"angry/ (names: {', '.join(e.label for e in Emotion)} or KDEF codes)")
    samples, issues = [], []
    for folder, emotion in classes.items():
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = file.relative_to(root).as_posix()
            if not is_image(file):
                issues.append(Issue(rel, "excluded", "not an image file"))
                continue
            person = None
            if pattern is not None:
                match = pattern.search(file.name)
                if not match or not match.groups():
                    issues.append(Issue(rel, "excluded", f"person regex {person_regex!r} does not match"))
                    continue
                person = match.group(1)
            problem, _ = check_image(file)
            if problem:
                issues.append(Issue(rel, "excluded", problem))
                continue
            samples.append(Sample(key=rel, path=file, label=emotion, person=person))
    if not samples:
        raise DatasetError(f"no usable images in the emotion folders of {root}")
    return Dataset(root, "folders", tuple(samples), tuple(issues))
