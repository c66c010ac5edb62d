"""JAFFE on a made-up jaffe/ folder of .tiff portraits: naming, persons, subject folds, files set aside."""

from __future__ import annotations

import json

import cv2
import pytest
from click.testing import CliRunner

from fersr_stream.classify.labels import Emotion
from training import config, jaffe, splits
from training.cli import cli
from training.dataset import DatasetError

# JAFFE's own codes, written out from its documentation (not from the loader's table).
CODES = {"AN": Emotion.ANGRY, "DI": Emotion.DISGUSTED, "FE": Emotion.AFRAID, "HA": Emotion.HAPPY,
         "NE": Emotion.NEUTRAL, "SA": Emotion.SAD, "SU": Emotion.SURPRISED}
PEOPLE = ("KA", "KL", "KM", "YM")


@pytest.fixture()
def folder(tmp_path, lfw_faces):
    """jaffe/<initials>.<code><take>.<number>.tiff: 4 people x 7 expressions x 2 takes (256 x 256 grey)."""
    root = tmp_path / "jaffe"
    root.mkdir()
    number = 0
    for person in PEOPLE:
        for code in CODES:
            for take in (1, 2):
                number += 1
                cv2.imwrite(str(root / f"{person}.{code}{take}.{number}.tiff"),
                            cv2.resize(lfw_faces[number % 100], (256, 256)))
    (root / "README").write_text("The JAFFE images may be used only for non-commercial scientific research.")
    cv2.imwrite(str(root / "KA.XX1.99.tiff"), cv2.resize(lfw_faces[1], (256, 256)))
    (root / "KL.HA3.98.tiff").write_bytes(b"II*\0 not really a tiff")
    return root


def test_names_labels_and_persons(folder):
    ds = jaffe.load(folder.parent)  # the folder holding jaffe/ is found too
    assert ds.root == folder and ds.framing == "portrait" and len(ds) == 4 * 7 * 2
    for sample in ds.samples:
        person, code, _ = sample.key.split(".")
        assert sample.person == person and sample.label == CODES[code[:2]] and sample.path.suffix == ".tiff"
    assert ds.counts()["person"] == {p: 14 for p in PEOPLE}
    issues = {i.file: i.reason for i in ds.issues}
    assert issues == {"README": "not an image file", "KA.XX1.99.tiff": "name does not follow JAFFE naming "
                      "(e.g. KA.AN1.39.tiff)", "KL.HA3.98.tiff": "corrupt (cannot be decoded)"}


def test_subject_folds_keep_each_person_in_one_part(folder):
    ds = jaffe.load(folder)
    person = {s.key: s.person for s in ds.samples}
    folds = splits.make(ds, config.ProtocolConfig(folds=2, val_fraction=0.3))
    assert sorted(k for f in folds for k in f.test) == sorted(person)
    for fold in folds:
        train, val, test = ({person[k] for k in part} for part in (fold.train, fold.val, fold.test))
        assert train and val and test and not (train & test) and not (val & test) and not (train & val)
    with pytest.raises(DatasetError, match="jaffe has no official split; use protocol.split=subject or image"):
        splits.make(ds, config.ProtocolConfig(split="official"))


def test_not_jaffe_is_one_clear_error(tmp_path, lfw_faces):
    cv2.imwrite(str(tmp_path / "face.tiff"), lfw_faces[0])  # an image, but not named as JAFFE's are
    with pytest.raises(DatasetError, match="is not a JAFFE folder"):
        jaffe.load(tmp_path)


def test_fersr_train_data_counts_it(folder):
    result = CliRunner().invoke(cli, ["data", "--data", str(folder), "--set", "data.kind=jaffe", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["images"] == 56 and summary["framing"] == "portrait" and len(summary["issues"]) == 3
    text = CliRunner().invoke(cli, ["data", "--data", str(folder), "--kind", "jaffe"]).stdout
    assert "faces.crop=auto -> detect" in text
