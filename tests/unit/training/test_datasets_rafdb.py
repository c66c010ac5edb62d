"""RAF-DB basic on a made-up tree: the label list, aligned images, the official split, every file set aside."""

from __future__ import annotations

import json

import cv2
import pytest
from click.testing import CliRunner

from fersr_stream.classify.labels import Emotion
from training import config, rafdb, splits
from training.cli import cli
from training.dataset import DatasetError

# RAF-DB's own codes, written out from its documentation (not from the loader's table).
CODES = {1: Emotion.SURPRISED, 2: Emotion.AFRAID, 3: Emotion.DISGUSTED, 4: Emotion.HAPPY, 5: Emotion.SAD,
         6: Emotion.ANGRY, 7: Emotion.NEUTRAL}


@pytest.fixture()
def tree(tmp_path, lfw_faces):
    """RAF-DB/basic with 4 training and 2 test images per label, plus the defects; returns (root, expected)."""
    basic = tmp_path / "RAF-DB" / "basic"
    aligned = basic / "Image" / "aligned"
    aligned.mkdir(parents=True)
    (basic / "Image" / "original").mkdir()
    (basic / "EmoLabel").mkdir()
    lines, expected, n = [], {}, 0
    for part, per_label in (("train", 4), ("test", 2)):
        for code, emotion in CODES.items():
            for _ in range(per_label):
                n += 1
                name = f"{part}_{n:05d}"
                lines.append(f"{name}.jpg {code}")
                face = cv2.resize(lfw_faces[n % 100], (100, 100))
                cv2.imwrite(str(aligned / f"{name}_aligned.jpg"), cv2.cvtColor(face, cv2.COLOR_GRAY2BGR))
                cv2.imwrite(str(basic / "Image" / "original" / f"{name}.jpg"), face)
                expected[name] = (emotion, part)
    lines += ["train_09001.jpg 3",  # listed, but its image is missing
              "train_00001.jpg 2",  # listed twice
              "train_09002.jpg 8",  # no such label
              "val_00001.jpg 1"]  # no such split
    cv2.imwrite(str(aligned / "train_09003_aligned.jpg"), cv2.resize(lfw_faces[0], (100, 100)))  # not listed
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return basic.parent, expected


def test_labels_parts_and_aligned_images(tree):
    root, expected = tree
    ds = rafdb.load(root)
    assert ds.root.name == "basic" and ds.framing == "face" and len(ds) == len(expected) == 42
    for sample in ds.samples:
        assert (sample.label, sample.part) == expected[sample.key]
        assert sample.path.name == f"{sample.key}_aligned.jpg" and sample.person is None
    assert ds.protocols == ("image", "official")


def test_every_line_and_file_not_used_is_an_issue(tree):
    root, _ = tree
    issues = {i.file: i.reason for i in rafdb.load(root / "basic").issues}
    listing = "EmoLabel/list_patition_label.txt"
    assert "missing" in issues["Image/aligned/train_09001_aligned.jpg"]
    assert "listed again (first on line 1)" in issues[f"{listing}:44"]
    assert "label 1..7" in issues[f"{listing}:45"] and "names no split" in issues[f"{listing}:46"]
    assert "not named in" in issues["Image/aligned/train_09003_aligned.jpg"]
    assert "42 whole photos not read" in issues["Image/original"]
    assert len(issues) == 6


def test_official_split_carves_validation_from_training(tree):
    ds = rafdb.load(tree[0])
    (fold,) = splits.make(ds, config.ProtocolConfig(split="official", val_fraction=0.25))
    part = {s.key: s.part for s in ds.samples}
    assert {part[k] for k in fold.test} == {"test"} and len(fold.test) == 14
    assert {part[k] for k in fold.train + fold.val} == {"train"} and not set(fold.train) & set(fold.val)
    label = {s.key: s.label for s in ds.samples}
    assert sorted(label[k] for k in fold.val) == sorted(Emotion)  # one of each emotion's four
    assert splits.make(ds, config.ProtocolConfig(split="official", val_fraction=0.25)) == [fold]
    with pytest.raises(DatasetError, match="rafdb does not give"):
        splits.make(ds, config.ProtocolConfig(split="subject"))


def test_not_rafdb_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="is not RAF-DB's basic folder"):
        rafdb.load(tmp_path)


def test_fersr_train_data_counts_it(tree):
    result = CliRunner().invoke(cli, ["data", "--data", str(tree[0]), "--set", "data.kind=rafdb", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["part"] == {"test": 14, "train": 28} and len(summary["issues"]) == 6
