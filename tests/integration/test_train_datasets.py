"""A whole (tiny) study on a dataset other than KDEF: a made-up fer2013.csv under its official split, and the
one-line refusals of what that dataset cannot do."""

from __future__ import annotations

import csv
import json

import cv2
import pytest
from click.testing import CliRunner

from fersr_stream.classify.labels import FER2013_ORDER
from training import config, faces, kdef, synthetic
from training.cli import cli

SMOKE = config.installed()["smoke"]
USAGE = {"F01": "Training", "M01": "Training", "F02": "PublicTest", "M02": "PrivateTest"}


@pytest.fixture(scope="module")
def fer_csv(tmp_path_factory):
    """fer2013.csv of synthetic faces cut to 48 x 48 grey (frontal and half views), usage by person."""
    out = tmp_path_factory.mktemp("fer")
    tree = kdef.load(synthetic.write(out / "drawn", list(USAGE), width=96), angles=("HL", "S", "HR"))
    lines = ["emotion,pixels,Usage"]
    for sample in tree.samples:
        image = cv2.imread(str(sample.path), cv2.IMREAD_GRAYSCALE)
        x1, y1, x2, y2 = (int(round(v)) for v in faces.fixed_box(*image.shape))
        face = cv2.resize(image[y1:y2, x1:x2], (48, 48), interpolation=cv2.INTER_AREA)
        lines.append(f"{FER2013_ORDER.index(sample.label)},{' '.join(map(str, face.ravel()))},"
                     f"{USAGE[sample.person]}")
    path = out / "fer2013.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(tmp_path, fer_csv, *extra):
    return CliRunner().invoke(cli, ["run", "--config", str(SMOKE), "--out", str(tmp_path / "runs"), "--quiet",
                                    "--set", "data.kind=fer2013", "--set", f"data.root={fer_csv}",
                                    "--set", "faces.crop=auto", "--set", "protocol.split=official",
                                    "--set", "train.epochs=1", "--set", "train.threads=", "--set", "name=fer",
                                    *extra], prog_name="fersr-train")


def test_fer2013_study_on_its_official_split(tmp_path, fer_csv):
    result = _run(tmp_path, fer_csv)
    assert result.exit_code == 0, result.output + repr(result.exception)
    folder = tmp_path / "runs" / "fer"
    usage = {f"fer2013.csv:{i + 2}": row["Usage"] for i, row in enumerate(csv.DictReader(fer_csv.open()))}
    (fold,) = json.loads((folder / "splits.json").read_text())["folds"]
    assert {usage[k] for k in fold["test"]} == {"PrivateTest"} and {usage[k] for k in fold["val"]} == {"PublicTest"}
    assert {usage[k] for k in fold["train"]} == {"Training"} and len(fold["test"]) == 7 * 3 * 2
    found = json.loads((folder / "faces.json").read_text())
    assert (found["crop"], found["detector"]) == ("none", None)  # already-cropped faces used as they are
    data = json.loads((folder / "data.json").read_text())
    assert data["kind"] == "fer2013" and data["framing"] == "face" and data["issues"] == []
    cell = folder / "cells" / "resnet18" / found["align"] / "train-hr" / "fold0"
    test = json.loads((cell / "test-hr.json").read_text())
    assert test["keys"] == fold["test"] and test["n"] == 42
    with open(folder / "results.csv") as f:
        assert sorted(r["test"] for r in csv.DictReader(f)) == ["hr", "lr16", "lr16-bicubic", "lr8", "lr8-bicubic"]
    report = (folder / "REPORT.md").read_text()
    assert "the dataset's official split" in report and "the images are the faces" in report


@pytest.mark.parametrize("extra, message", [
    (("--set", "faces.crop=box"), "faces.crop=box is KDEF's fixed face box, which does not fit fer2013"),
    (("--set", "protocol.split=subject"), "needs a person for every image, which fer2013 does not give"),
])
def test_what_fer2013_cannot_do_is_one_line(tmp_path, fer_csv, extra, message):
    result = _run(tmp_path, fer_csv, *extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "runs").exists()
