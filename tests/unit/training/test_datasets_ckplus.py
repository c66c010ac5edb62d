"""CK+ on made-up trees in both layouts: the original sequences with Emotion/ labels, and CK+48; contempt."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fersr_stream.classify.labels import Emotion
from training import ckplus, config, splits
from training.cli import cli
from training.dataset import DatasetError

# CK+'s own codes, written out from its documentation (not from the loader's table); 2 is contempt.
CODES = {1: Emotion.ANGRY, 2: None, 3: Emotion.DISGUSTED, 4: Emotion.AFRAID, 5: Emotion.HAPPY, 6: Emotion.SAD,
         7: Emotion.SURPRISED}
SUBJECTS = ("S005", "S010", "S011")
CK48_SUBJECTS = (*SUBJECTS, "S022")


def _frame(face: np.ndarray, path) -> None:
    """A 640 x 490 grey frame with the face in the middle, as CK+ stores them."""
    frame = np.full((490, 640), 90, np.uint8)
    frame[120:370, 195:445] = cv2.resize(face, (250, 250))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), frame)


@pytest.fixture()
def original(tmp_path, lfw_faces):
    """cohn-kanade-images/ + Emotion/: each subject has one 6-frame sequence per code and one unlabelled one."""
    root = tmp_path / "CK+"
    for s, subject in enumerate(SUBJECTS):
        for code in (*CODES, None):
            sequence = f"{code or 9:03d}"
            for frame in range(1, 7):
                name = f"{subject}_{sequence}_{frame:08d}"
                _frame(lfw_faces[(7 * s + (code or 0) + frame) % 100], root / ckplus.IMAGES / subject / sequence /
                       f"{name}.png")
            labels = root / ckplus.LABELS / subject / sequence
            labels.mkdir(parents=True)  # CK+ keeps a (then empty) folder for unlabelled sequences too
            if code is not None:
                (labels / f"{name}_emotion.txt").write_text(f"   {code:.7e}\n")
    (root / ckplus.IMAGES / "S005" / "001" / ".DS_Store").write_bytes(b"\0")
    return root


def test_original_peak_frames_carry_the_label_and_first_frames_are_neutral(original):
    ds = ckplus.load(original / ckplus.IMAGES)  # the images folder itself is accepted too
    assert ds.root == original and ds.framing == "portrait" and ds.emotions == tuple(Emotion)
    for sample in ds.samples:
        subject, sequence, frame = sample.key.split("_")
        assert sample.person == subject
        expected = Emotion.NEUTRAL if frame == "00000001" else CODES[int(sequence)]
        assert frame in ("00000001", "00000004", "00000005", "00000006") and sample.label == expected
    # per subject: 7 neutral first frames (contempt's too) + 3 peak frames of the 6 sequences that are not contempt
    assert len(ds) == 3 * (7 + 3 * 6)
    assert ds.counts()["emotion"]["NE"] == 21 and ds.protocols == ("subject", "image")


def test_original_lists_contempt_unlabelled_and_unused_frames(original):
    issues = {i.file: i.reason for i in ckplus.load(original).issues}
    assert "contempt" in issues["cohn-kanade-images/S010/002/S010_002_00000006.png"]
    assert sum("contempt" in r for r in issues.values()) == 3 * 3
    assert "no emotion label" in issues["cohn-kanade-images/S011/009"]
    assert issues["cohn-kanade-images/S005/001/.DS_Store"] == "not an image file"
    assert issues["cohn-kanade-images"].startswith(f"{3 * 7 * 2} frames of labelled sequences not used")


def test_original_bad_label_file(original):
    label = original / ckplus.LABELS / "S005" / "003" / "S005_003_00000006_emotion.txt"
    label.write_text("disgust\n")
    issues = {i.file: i.reason for i in ckplus.load(original).issues}
    assert "is not 0..7" in issues["cohn-kanade-images/S005/003"]


@pytest.fixture()
def ck48(tmp_path, lfw_faces):
    """CK+48/<class>/S005_001_00000011.png: 4 subjects x 2 frames per class, and a stray file."""
    root = tmp_path / "CK+48"
    for c, name in enumerate(("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")):
        (root / name).mkdir(parents=True)
        for subject in CK48_SUBJECTS:
            for frame in (5, 6):
                cv2.imwrite(str(root / name / f"{subject}_{c + 1:03d}_{frame:08d}.png"),
                            cv2.resize(lfw_faces[c * 7 + frame], (48, 48)))
    (root / "happy" / "notes.txt").write_text("x")
    return root


def test_ck48_folders_with_contempt_dropped_and_subjects(ck48):
    ds = ckplus.load(ck48.parent)
    expected = {"anger": Emotion.ANGRY, "disgust": Emotion.DISGUSTED, "fear": Emotion.AFRAID,
                "happy": Emotion.HAPPY, "sadness": Emotion.SAD, "surprise": Emotion.SURPRISED}
    assert ds.kind == "ckplus" and ds.framing == "face" and len(ds) == 6 * 4 * 2
    assert all(s.label == expected[s.key.split("/")[0]] for s in ds.samples)
    assert {s.person for s in ds.samples} == set(CK48_SUBJECTS)
    assert Emotion.NEUTRAL not in ds.emotions and len(ds.emotions) == 6
    ds.require_complete()  # CK+48 holds no neutral faces by design: six emotions are complete
    issues = {i.file: i.reason for i in ds.issues}
    assert len(issues) == 4 * 2 + 1 and "contempt" in issues["contempt/S005_002_00000005.png"]
    assert issues["happy/notes.txt"] == "not an image file"
    folds = splits.make(ds, config.ProtocolConfig(folds=2, val_fraction=0.3))
    for fold in folds:
        assert not {k.split("/")[1][:4] for k in fold.test} & {k.split("/")[1][:4] for k in fold.train}
    with pytest.raises(DatasetError, match="ckplus has no official split"):
        splits.make(ds, config.ProtocolConfig(split="official"))


def test_not_ckplus_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="is not a CK\\+ folder"):
        ckplus.load(tmp_path)
    (tmp_path / ckplus.IMAGES).mkdir()
    with pytest.raises(DatasetError, match="no Emotion/ folder"):
        ckplus.load(tmp_path)


@pytest.mark.parametrize("layout", ["original", "ck48"])
def test_fersr_train_data_counts_it(request, layout):
    root = request.getfixturevalue(layout)
    result = CliRunner().invoke(cli, ["data", "--data", str(root), "--set", "data.kind=ckplus", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["images"] == (75 if layout == "original" else 48)
    assert summary["protocols"] == ["subject", "image"]
    assert sum("contempt" in i["reason"] for i in summary["issues"]) == (9 if layout == "original" else 8)
