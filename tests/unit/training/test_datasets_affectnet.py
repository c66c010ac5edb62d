"""AffectNet on a made-up train_set/ + val_set/ tree with .npy labels: labels, contempt, the official split."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fersr_stream.classify.labels import Emotion
from training import affectnet, config, splits
from training.cli import cli
from training.dataset import DatasetError

# AffectNet's own codes, written out from its documentation (not from the loader's table); 7 is contempt.
CODES = {0: Emotion.NEUTRAL, 1: Emotion.HAPPY, 2: Emotion.SAD, 3: Emotion.SURPRISED, 4: Emotion.AFRAID,
         5: Emotion.DISGUSTED, 6: Emotion.ANGRY, 7: None}


@pytest.fixture()
def tree(tmp_path, lfw_faces):
    """3 training and 2 validation images per code, labels saved as the distribution does (a string array), plus
    defects; returns (root, {key: expected emotion})."""
    root = tmp_path / "affectnet"
    expected, n = {}, 0
    for folder, per_code in (("train_set", 3), ("val_set", 2)):
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "annotations").mkdir()
        for code, emotion in CODES.items():
            for _ in range(per_code):
                n += 1
                face = cv2.cvtColor(cv2.resize(lfw_faces[n % 100], (224, 224)), cv2.COLOR_GRAY2BGR)
                cv2.imwrite(str(root / folder / "images" / f"{n}.jpg"), face)
                np.save(root / folder / "annotations" / f"{n}_exp.npy", np.array(str(code)))
                np.save(root / folder / "annotations" / f"{n}_val.npy", np.array("0.25"))
                expected[f"{folder}/{n}"] = emotion
    train = root / "train_set"
    cv2.imwrite(str(train / "images" / "900.jpg"), cv2.resize(lfw_faces[0], (224, 224)))  # no label file
    cv2.imwrite(str(train / "images" / "901.jpg"), cv2.resize(lfw_faces[1], (224, 224)))
    np.save(train / "annotations" / "901_exp.npy", np.array(9))  # uncertain, stored as a number
    cv2.imwrite(str(train / "images" / "902.jpg"), cv2.resize(lfw_faces[2], (224, 224)))
    np.save(train / "annotations" / "902_exp.npy", np.int64(4))  # fear, stored as a number
    expected["train_set/902"] = Emotion.AFRAID
    (root / "test_set").mkdir()  # a third-party re-split: not AffectNet's
    return root, expected


def test_labels_parts_and_contempt(tree):
    root, expected = tree
    ds = affectnet.load(root)
    assert ds.framing == "face" and len(ds) == 7 * 5 + 1
    for sample in ds.samples:
        assert sample.label == expected[sample.key] and sample.person is None
        assert sample.part == ("train" if sample.key.startswith("train_set/") else "test")
    issues = {i.file: i.reason for i in ds.issues}
    assert {f for f, r in issues.items() if "contempt" in r} == \
        {f"{k.split('/')[0]}/images/{k.split('/')[1]}.jpg" for k, e in expected.items() if e is None}
    assert "no expression label" in issues["train_set/images/900.jpg"]
    assert issues["train_set/images/901.jpg"] == "labelled uncertain (9)"
    assert "not read" in issues["test_set"] and len(issues) == 5 + 3


def test_validation_set_is_the_test_part(tree):
    ds = affectnet.load(tree[0])
    (fold,) = splits.make(ds, config.ProtocolConfig(split="official", val_fraction=0.34))
    assert all(k.startswith("val_set/") for k in fold.test) and len(fold.test) == 14
    assert all(k.startswith("train_set/") for k in fold.train + fold.val)
    assert len(fold.val) == 7 and len(fold.train) == 3 * 7 + 1 - 7  # one of each emotion validates
    with pytest.raises(DatasetError, match="affectnet does not give"):
        splits.make(ds, config.ProtocolConfig(split="subject"))


def test_not_affectnet_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="is not an AffectNet folder"):
        affectnet.load(tmp_path)


def test_fersr_train_data_counts_it(tree):
    result = CliRunner().invoke(cli, ["data", "--data", str(tree[0]), "--set", "data.kind=affectnet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["part"] == {"test": 14, "train": 22} and summary["protocols"] == ["image", "official"]
