"""The generic one-folder-per-class layout: any class list through data.classes, split folders, every file
accounted for, .tif/.tiff/.webp."""

from __future__ import annotations

import json

import cv2
import pytest
from click.testing import CliRunner

from fersr_stream.classify.labels import Emotion
from fersr_stream.errors import ConfigError
from training import config, folders, splits
from training.cli import cli
from training.dataset import DatasetError


def _fill(folder, faces, names):
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), cv2.resize(faces[i], (48, 48)))


@pytest.fixture()
def tree(tmp_path, lfw_faces):
    """happy/ (.png, .tif), Sadness/ (.tiff, .webp), AN/ (.jpg), contempt/, and stray files; names carry a person."""
    root = tmp_path / "faces"
    _fill(root / "happy", lfw_faces, ["p1_a.png", "p2_a.tif", "p3_a.png"])
    _fill(root / "Sadness", lfw_faces[10:], ["p1_b.tiff", "p2_b.webp", "p3_b.png"])
    _fill(root / "AN", lfw_faces[20:], ["p1_c.jpg", "p2_c.jpg", "p3_c.jpg", "nobody.jpg"])
    _fill(root / "contempt", lfw_faces[30:], ["p1_d.png"])
    (root / "happy" / "notes.txt").write_text("x")
    (root / "labels.csv").write_text("x")
    return root


def test_unknown_class_folders_stop_the_load_naming_them(tree):
    with pytest.raises(DatasetError, match=r"name no emotion in .*: contempt; .*data.classes=\[contempt=drop\]"):
        folders.load(tree)


def test_classes_drop_and_map_and_every_file_is_listed(tree):
    ds = folders.load(tree, person_regex=r"^(p\d)_", classes=("contempt=drop",))
    label = {s.key: s.label for s in ds.samples}
    assert label == {"happy/p1_a.png": Emotion.HAPPY, "happy/p2_a.tif": Emotion.HAPPY,
                     "happy/p3_a.png": Emotion.HAPPY, "Sadness/p1_b.tiff": Emotion.SAD,
                     "Sadness/p2_b.webp": Emotion.SAD, "Sadness/p3_b.png": Emotion.SAD,
                     "AN/p1_c.jpg": Emotion.ANGRY, "AN/p2_c.jpg": Emotion.ANGRY, "AN/p3_c.jpg": Emotion.ANGRY}
    assert {s.person for s in ds.samples} == {"p1", "p2", "p3"} and ds.framing == "face"
    assert ds.emotions == (Emotion.ANGRY, Emotion.HAPPY, Emotion.SAD)
    issues = {i.file: i.reason for i in ds.issues}
    assert issues == {"labels.csv": "not inside a class folder", "happy/notes.txt": "not an image file",
                      "AN/nobody.jpg": "person regex '^(p\\\\d)_' does not match",
                      "contempt/p1_d.png": "a class folder mapped to drop (data.classes)"}
    mapped = folders.load(tree, classes=("CONTEMPT=disgusted",))  # names match in any case
    assert {s.label for s in mapped.samples if s.key.startswith("contempt/")} == {Emotion.DISGUSTED}


def test_split_folders_give_the_official_split(tmp_path, lfw_faces):
    root = tmp_path / "fer"
    for part, n in (("train", 4), ("validation", 2), ("Test", 2)):
        for k, emotion in enumerate(("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")):
            _fill(root / part / emotion, lfw_faces[k * 8:], [f"{part}{i}.png" for i in range(n)])
    (root / "README.md").write_text("x")
    ds = folders.load(root)
    assert ds.protocols == ("image", "official")
    assert ds.counts()["part"] == {"test": 14, "train": 28, "val": 14}
    assert {i.file for i in ds.issues} == {"README.md"}
    (fold,) = splits.make(ds, config.ProtocolConfig(split="official"))
    assert all(k.startswith("Test/") for k in fold.test) and all(k.startswith("validation/") for k in fold.val)
    (root / "happy").mkdir()
    with pytest.raises(DatasetError, match="mixes split folders"):
        folders.load(root)


def test_classes_config_is_checked():
    cfg = config.load(None, ["data.kind=folders", "data.classes=[contempt=drop, joy=happy]"])
    assert folders.parse_classes(cfg.data.classes) == {"contempt": None, "joy": Emotion.HAPPY}
    for item, message in {"data.classes=[contempt]": "expected folder=emotion or folder=drop",
                          "data.classes=[joy=glad]": "unknown emotion 'glad'"}.items():
        with pytest.raises(ConfigError, match=message):
            config.load(None, ["data.kind=folders", item])
    with pytest.raises(ConfigError, match="applies to data.kind=folders only"):
        config.load(None, ["data.kind=fer2013", "data.classes=[contempt=drop]"])


def test_fersr_train_data_lists_and_refuses(tree):
    result = CliRunner().invoke(cli, ["data", "--data", str(tree), "--kind", "folders"])
    assert result.exit_code == 2 and "contempt" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = CliRunner().invoke(cli, ["data", "--data", str(tree), "--set", "data.kind=folders",
                                      "--set", "data.classes=[contempt=drop]", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["images"] == 10 and summary["protocols"] == ["image"] and len(summary["issues"]) == 3
