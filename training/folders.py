"""Loader for emotion datasets laid out one folder per class (``root/happy/*.png``, ``root/HA/...``), optionally
inside official split folders (``root/train/happy/``, ``root/val/...``, ``root/test/...``).

A class folder's name is read with :meth:`Emotion.parse` (KDEF codes, English names, FER2013 names) unless
``data.classes`` maps it (``contempt=drop``, ``joy=happy``); a folder that is neither stops the load with one
line naming it, and every file of a dropped class is listed as excluded. The faces are taken as already cropped
(``faces.crop=auto`` uses them as they are). Without a person regex the persons are unknown, so the subject split
does not apply; split folders give the official one.
"""

from __future__ import annotations

import re
from pathlib import Path

from fersr_stream.classify.labels import Emotion
from fersr_stream.errors import ConfigError
from fersr_stream.sources.images import is_image_path

from .dataset import Dataset, DatasetError, Issue, Sample, check_image, set_aside

# Split folder names (any case) and the official part each holds.
PARTS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
         "test": "test", "testing": "test"}


def parse_classes(items: tuple[str, ...]) -> dict[str, Emotion | None]:
    """``("contempt=drop", "joy=happy")`` -> {lower-case folder name: emotion, or None to drop its files}.

    Raises:
        ConfigError: an item that is not ``name=emotion`` or ``name=drop``.
    """
    out: dict[str, Emotion | None] = {}
    for item in items:
        name, sep, target = (part.strip() for part in item.partition("="))
        if not (sep and name and target):
            raise ConfigError(f"config key 'data.classes': expected folder=emotion or folder=drop, got {item!r}")
        if target.lower() == "drop":
            out[name.lower()] = None
            continue
        try:
            out[name.lower()] = Emotion.parse(target)
        except ValueError as exc:
            raise ConfigError(f"config key 'data.classes': {item!r}: {exc} or drop") from None
    return out


def load(path: str | Path, person_regex: str | None = None, classes: tuple[str, ...] = ()) -> Dataset:
    """Scan ``path/[<split>/]<class>/**/<image>``.

    Args:
        person_regex: a regex searched in each file name whose first group is the person id; files it does not
            match are excluded with an issue.
        classes: ``data.classes`` items mapping folder names to an emotion or ``drop``.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    try:
        pattern = re.compile(person_regex) if person_regex else None
    except re.error as exc:
        raise DatasetError(f"data.person_regex {person_regex!r} is not a valid regex: {exc}") from None
    return scan(root, parse_classes(classes), pattern, "folders", "a class folder mapped to drop (data.classes)")


def scan(root: Path, classes: dict[str, Emotion | None], person: re.Pattern | None, kind: str,
         dropped: str) -> Dataset:
    """Read the class folders of ``root`` (see :func:`load`); also CK+48's layout.

    Args:
        classes: lower-case folder names mapped to an emotion or None (drop), read before :meth:`Emotion.parse`.
        person: its first group, searched in a file name, is the person; files it misses are excluded.
        dropped: the reason listed for each file of a class mapped to None.
    """
    folders, issues = _class_folders(root, classes)
    samples = []
    for folder, part, emotion in folders:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = file.relative_to(root).as_posix()
            who, reason = _read(file, emotion, person, dropped)
            if reason:
                issues.append(Issue(rel, "excluded", reason))
                continue
            samples.append(Sample(key=rel, path=file, label=emotion, person=who, part=part))
    if not samples:
        raise DatasetError(f"no usable images in the class folders of {root}{set_aside(issues)}")
    emotions = tuple(sorted({e for _, _, e in folders if e is not None}))
    return Dataset(root, kind, tuple(samples), tuple(issues), framing="face", emotions=emotions)


def _read(file: Path, emotion: Emotion | None, person: re.Pattern | None,
          dropped: str) -> tuple[str | None, str | None]:
    """(its person or None, None) for a usable file of a class folder; (None, why not) for another."""
    if not is_image_path(file):
        return None, "not an image file"
    if emotion is None:
        return None, dropped
    who = None
    if person is not None:
        match = person.search(file.name)
        who = match.group(1) if match and match.groups() else None
        if not who:
            return None, f"person regex {person.pattern!r} does not match"
    return who, check_image(file)[0]


def _class_folders(root: Path, classes: dict[str, Emotion | None]) -> tuple[list, list[Issue]]:
    """([(class folder, official part or None, emotion or None)], issues for files outside class folders).

    Raises:
        DatasetError: no class folders, a folder that names no emotion and is not mapped, or split folders mixed
            with other folders.
    """
    subfolders = sorted(p for p in root.iterdir() if p.is_dir())
    split = [p for p in subfolders if p.name.lower() in PARTS]
    if split and len(split) < len(subfolders):
        others = ", ".join(p.name for p in subfolders if p not in split)
        raise DatasetError(f"{root} mixes split folders ({', '.join(p.name for p in split)}) with other folders "
                           f"({others}); keep one layout: class folders, or split folders holding class folders")
    bases = [(p, PARTS[p.name.lower()]) for p in split] or [(root, None)]
    stray = [p for p in root.iterdir() if p.is_file()]
    if split:
        stray += [p for base, _ in bases for p in base.iterdir() if p.is_file()]
    issues = [Issue(p.relative_to(root).as_posix(), "excluded", "not inside a class folder") for p in sorted(stray)]
    found, unknown = [], []
    for base, part in bases:
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            try:
                found.append((folder, part, _emotion(folder.name, classes)))
            except ValueError:
                unknown.append(folder.relative_to(root).as_posix())
    if unknown:
        name = Path(unknown[0]).name
        raise DatasetError(f"class folders that name no emotion in {root}: {', '.join(unknown)}; map each to an "
                           f"emotion or drop it, e.g. --set 'data.classes=[{name}=drop]'")
    if not found:
        raise DatasetError(f"{root} has no class folders: expected one folder per emotion, e.g. happy/, angry/ "
                           f"(names: {', '.join(e.label for e in Emotion)} or KDEF codes), optionally inside "
                           "train/ val/ test/")
    return found, issues


def _emotion(name: str, classes: dict[str, Emotion | None]) -> Emotion | None:
    """The emotion a folder name stands for, or None when its class is dropped.

    Raises:
        ValueError: the name is not mapped and names no emotion.
    """
    if name.lower() in classes:
        return classes[name.lower()]
    return Emotion.parse(name)
