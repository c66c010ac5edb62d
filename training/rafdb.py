"""Loader for the basic-emotion part of RAF-DB (Real-world Affective Faces) as distributed.

Layout: ``basic/EmoLabel/list_patition_label.txt`` (sic: the distribution's spelling), one ``train_00001.jpg 5``
line per image, labels 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral; images in
``basic/Image/aligned/train_00001_aligned.jpg`` (100 x 100, cropped and aligned by the distributor, used as they
are) and ``basic/Image/original/`` (whole photos, not read). The name's prefix is the official split (train /
test; no validation part, so one is carved from the training part). The images carry no person.
"""

from __future__ import annotations

from pathlib import Path

from fersr_stream.classify.labels import Emotion

from .dataset import Dataset, DatasetError, Issue, Sample, check_image, set_aside

LABELS = {1: Emotion.SURPRISED, 2: Emotion.AFRAID, 3: Emotion.DISGUSTED, 4: Emotion.HAPPY, 5: Emotion.SAD,
          6: Emotion.ANGRY, 7: Emotion.NEUTRAL}
LIST = Path("EmoLabel") / "list_patition_label.txt"
ALIGNED = Path("Image") / "aligned"
PARTS = ("train", "test")  # the name prefixes


def find_root(path: str | Path) -> Path:
    """The ``basic`` folder: ``path`` itself or ``path/basic``."""
    path = Path(path)
    for candidate in (path, path / "basic"):
        if (candidate / LIST).is_file() and (candidate / ALIGNED).is_dir():
            return candidate
    raise DatasetError(f"{path} is not RAF-DB's basic folder: expected basic/{LIST.as_posix()} and "
                       f"basic/{ALIGNED.as_posix()}/ (give the RAF-DB folder or basic/ itself)")


def load(path: str | Path) -> Dataset:
    """Read the label list and the aligned images it names; every line or image not used is an issue."""
    root = find_root(path)
    listed, issues = _read_list(root)
    samples = []
    for name, (line, label) in listed.items():
        image = root / ALIGNED / f"{Path(name).stem}_aligned.jpg"
        rel = image.relative_to(root).as_posix()
        if not image.is_file():
            issues.append(Issue(rel, "excluded", f"named on {LIST.name} line {line} but missing"))
            continue
        problem, _ = check_image(image)
        if problem:
            issues.append(Issue(rel, "excluded", problem))
            continue
        samples.append(Sample(key=Path(name).stem, path=image, label=label, part=name.split("_", 1)[0]))
    used = {f"{Path(n).stem}_aligned.jpg" for n in listed}
    issues += [Issue(p.relative_to(root).as_posix(), "excluded", f"not named in {LIST.name}")
               for p in sorted((root / ALIGNED).iterdir()) if p.name not in used]
    original = root / "Image" / "original"
    if original.is_dir():
        issues.append(Issue(original.relative_to(root).as_posix(), "excluded",
                            f"{sum(1 for _ in original.iterdir())} whole photos not read: the aligned faces are"))
    if not samples:
        raise DatasetError(f"no usable RAF-DB images in {root / ALIGNED}{set_aside(issues)}")
    return Dataset(root, "rafdb", tuple(samples), tuple(issues), framing="face")


def _read_list(root: Path) -> tuple[dict[str, tuple[int, Emotion]], list[Issue]]:
    """{image name: (line number, emotion)} from the label list, and an issue for each line it cannot use."""
    listed, issues = {}, []
    where = LIST.as_posix()
    for number, text in enumerate((root / LIST).read_text().splitlines(), 1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) not in LABELS:
            issues.append(Issue(f"{where}:{number}", "excluded", f"not 'name label' with a label 1..7: {text!r}"))
        elif fields[0].split("_", 1)[0] not in PARTS:
            issues.append(Issue(f"{where}:{number}", "excluded", f"{fields[0]} names no split (train_ or test_)"))
        elif fields[0] in listed:
            issues.append(Issue(f"{where}:{number}", "excluded", f"{fields[0]} listed again (first on line "
                                                                 f"{listed[fields[0]][0]})"))
        else:
            listed[fields[0]] = (number, LABELS[int(fields[1])])
    return listed, issues
