"""Loader for FER2013 as the Kaggle challenge distributes it: one table, ``fer2013.csv``.

Columns ``emotion,pixels,Usage`` (any order; ``icml_face_data.csv``'s header with spaces reads too): ``emotion``
0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral; ``pixels`` 48 x 48 grey levels, space-separated,
row by row; ``Usage`` Training | PublicTest | PrivateTest, the official split (PublicTest is the validation set,
PrivateTest the test set). The faces were cropped and roughly aligned by the distributor and are used as they are.
Rows carry no person, so only the official and the image-level protocols apply. A row is named by its line in the
file (``fer2013.csv:2``) in keys and issues.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from fersr_stream.classify.labels import FER2013_ORDER

from .dataset import Dataset, DatasetError, Issue, Sample, judge_pixels, set_aside

SIDE = 48
USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
COLUMNS = ("emotion", "pixels")  # required; Usage is optional (without it there is no official split)


def find_csv(path: str | Path) -> Path:
    """The CSV: ``path`` itself, or ``fer2013.csv`` in the folder ``path`` or in its ``fer2013/``."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / "fer2013.csv", path / "fer2013" / "fer2013.csv"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{path} holds no fer2013.csv: give the CSV (emotion,pixels,Usage) or the folder holding it")


def load(path: str | Path) -> Dataset:
    """Read every row; rows that are malformed, mislabelled, blank or near-black are excluded with an issue."""
    file = find_csv(path)
    images, samples, issues = [], [], []
    with open(file, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = [name.strip() for name in next(reader, [])]
        except UnicodeDecodeError:
            raise DatasetError(f"{file} is not a CSV text file (a compressed download, say fer2013.tar.gz? unpack "
                               f"it and give the fer2013.csv inside)") from None
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DatasetError(f"{file} is not FER2013's CSV: it lacks the column(s) {', '.join(missing)} "
                               f"(header: {','.join(header)})")
        column = {name: i for i, name in enumerate(header)}
        for row in reader:
            where = f"{file.name}:{reader.line_num}"
            parsed = _row(row, column)
            if isinstance(parsed, str):
                issues.append(Issue(where, "excluded", parsed))
                continue
            label, part, pixels = parsed
            samples.append(Sample(key=where, path=file, label=label, part=part, row=len(images)))
            images.append(pixels)
    if not samples:
        raise DatasetError(f"no usable rows in {file}{set_aside(issues)}")
    table = np.stack(images)
    return Dataset(file.parent, "fer2013", tuple(samples), tuple(issues), framing="face", table=table)


def _row(row: list[str], column: dict[str, int]):
    """(emotion, official part or None, (48, 48) uint8 pixels) of one CSV row, or why it is unusable."""
    if len(row) != len(column):
        return f"{len(row)} fields where the header has {len(column)}"
    try:
        label = FER2013_ORDER[int(row[column["emotion"]])]
    except (ValueError, IndexError):
        return f"emotion {row[column['emotion']]!r} is not 0..6"
    part = None
    if "Usage" in column:
        part = USAGE.get(row[column["Usage"]].strip())
        if part is None:
            return f"Usage {row[column['Usage']]!r} is not one of {', '.join(USAGE)}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy only warns where the text holds something other than numbers
        try:
            values = np.fromstring(row[column["pixels"]], dtype=np.int64, sep=" ")
        except (DeprecationWarning, ValueError):
            return "pixels are not all numbers"
    if values.size != SIDE * SIDE:
        return f"{values.size} pixel values where a {SIDE} x {SIDE} image has {SIDE * SIDE}"
    if values.min() < 0 or values.max() > 255:
        return "pixel values outside 0..255"
    pixels = values.astype(np.uint8).reshape(SIDE, SIDE)
    problem = judge_pixels(pixels)
    return problem if problem else (label, part, pixels)
