"""FER2013's CSV on a made-up fer2013.csv: labels, the official split, bad rows, protocols, fersr-train data."""

from __future__ import annotations

import json
import tarfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fersr_stream.classify.labels import Emotion
from training import config, fer2013, splits
from training.cli import cli
from training.dataset import DatasetError

# FER2013's own codes, written out from its documentation (not from the loader's table).
CODES = {0: Emotion.ANGRY, 1: Emotion.DISGUSTED, 2: Emotion.AFRAID, 3: Emotion.HAPPY, 4: Emotion.SAD,
         5: Emotion.SURPRISED, 6: Emotion.NEUTRAL}


def _pixels(face: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in cv2.resize(face, (48, 48)).ravel())


@pytest.fixture()
def csv_file(tmp_path, lfw_faces):
    """fer2013/fer2013.csv: 3 rows per emotion and usage (63 rows), then five bad rows; returns (path, faces)."""
    lines, faces = ["emotion,pixels,Usage"], {}
    for i, (usage, code) in enumerate((u, c) for u in ("Training", "PublicTest", "PrivateTest") for c in CODES
                                      for _ in range(3)):
        lines.append(f"{code},{_pixels(lfw_faces[i % 100])},{usage}")
        faces[len(lines)] = (CODES[code], usage, lfw_faces[i % 100])  # keyed by line number
    good = _pixels(lfw_faces[0])
    lines += [f"7,{good},Training",  # no such emotion
              f"3,{' '.join(['0'] * 2304)},Training",  # an all-black image
              f"3,{' '.join(['128'] * 2304)},PublicTest",  # blank
              f"3,{good[:-4]},Training",  # pixels cut short
              f"3,{good},Holdout"]  # no such usage
    path = tmp_path / "fer2013" / "fer2013.csv"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path, faces


def test_rows_labels_and_official_parts(csv_file):
    path, faces = csv_file
    ds = fer2013.load(path.parent.parent)  # the folder holding fer2013/ is found too
    assert ds.kind == "fer2013" and ds.framing == "face" and len(ds) == 63
    part = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    for sample in ds.samples:
        line = int(sample.key.split(":")[1])
        label, usage, face = faces[line]
        assert sample.key == f"fer2013.csv:{line}" and sample.label == label and sample.part == part[usage]
        assert sample.person is None
        image = ds.image(sample)  # the row's pixels, as RGB
        assert image.shape == (48, 48, 3) and np.array_equal(image[..., 0], cv2.resize(face, (48, 48)))
    assert ds.counts()["emotion"] == {e.code: 9 for e in Emotion}
    assert ds.protocols == ("image", "official")


def test_every_bad_row_is_an_issue(csv_file):
    path, _ = csv_file
    issues = {i.file: i.reason for i in fer2013.load(path).issues}
    assert all(i.startswith("fer2013.csv:") for i in issues) and len(issues) == 5
    assert "is not 0..6" in issues["fer2013.csv:65"]
    assert "near-black" in issues["fer2013.csv:66"] and "blank" in issues["fer2013.csv:67"]
    assert "2303 pixel values" in issues["fer2013.csv:68"] and "Holdout" in issues["fer2013.csv:69"]


def test_official_split_and_refused_subject_split(csv_file):
    ds = fer2013.load(csv_file[0])
    (fold,) = splits.make(ds, config.ProtocolConfig(split="official"))
    part = {s.key: s.part for s in ds.samples}
    assert {part[k] for k in fold.train} == {"train"} and {part[k] for k in fold.val} == {"val"}
    assert {part[k] for k in fold.test} == {"test"} and len(fold.test) == 21
    with pytest.raises(DatasetError, match="needs a person for every image.*protocol.split=image or official"):
        splits.make(ds, config.ProtocolConfig(split="subject"))


def test_a_csv_of_another_shape_is_one_clear_error(tmp_path):
    (tmp_path / "other.csv").write_text("label,image\n3,1 2 3\n")
    with pytest.raises(DatasetError, match="lacks the column.*emotion, pixels"):
        fer2013.load(tmp_path / "other.csv")
    with pytest.raises(DatasetError, match="holds no fer2013.csv"):
        fer2013.load(tmp_path)
    archive = tmp_path / "fer2013.tar.gz"  # the download itself, not unpacked
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "other.csv", arcname="fer2013/fer2013.csv")
    with pytest.raises(DatasetError, match=r"fer2013.tar.gz is not a CSV text file \(a compressed download"):
        fer2013.load(archive)
    blank = " ".join(["128"] * 2304)
    (tmp_path / "blank.csv").write_text(f"emotion,pixels\n3,{blank}\n4,{blank}\n7,{blank}\n")
    with pytest.raises(DatasetError, match=r"^no usable rows in .*blank.csv; excluded: 2 blank .*, 1 emotion '7' "):
        fer2013.load(tmp_path / "blank.csv")


def test_fersr_train_data_counts_it(csv_file):
    path, _ = csv_file
    result = CliRunner().invoke(cli, ["data", "--data", str(path), "--set", "data.kind=fer2013", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["part"] == {"test": 21, "train": 21, "val": 21} and len(summary["issues"]) == 5
    text = CliRunner().invoke(cli, ["data", "--data", str(path), "--kind", "fer2013"]).stdout
    assert "faces.crop=auto -> none" in text and "protocols (protocol.split): image, official" in text
