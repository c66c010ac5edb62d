"""The KDEF loader on fake trees: naming, the distribution's known defects, bad folders."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fersr_stream.classify.labels import Emotion
from fersr_stream.errors import ConfigError
from training import kdef, synthetic
from training.dataset import DatasetError


@pytest.fixture(scope="module")
def kdef_tree(tmp_path_factory):
    """A synthetic KDEF tree (F31, M31, F01) with the real defects injected; returns (root, defects)."""
    out = tmp_path_factory.mktemp("kdef")
    root = synthetic.write(out, ["F31", "M31", "F01"], width=64)
    return root, synthetic.inject_defects(root)


def test_parse_name_any_case_and_straight_view():
    assert kdef.parse_name("af01afs") == {"session": "A", "gender": "F", "id": "01", "emotion": "AF", "angle": "S"}
    assert kdef.parse_name("BM35SUHR")["angle"] == "HR"
    assert kdef.parse_name("AF31V") is None
    assert kdef.parse_name("AF01XXS") is None


def test_loader_handles_every_known_defect(kdef_tree):
    root, defects = kdef_tree
    ds = kdef.load(root.parent)  # the KDEF_and_AKDEF-style folder above KDEF
    assert ds.root == root
    issues = {i.file: i for i in ds.issues}
    keys = {s.key for s in ds.samples}
    # misnamed files are renamed and used under their real names
    assert issues["AF31/AF31V.JPG"].action == "renamed" and "AF31SAHL" in issues["AF31/AF31V.JPG"].reason
    assert issues["AM31/AM31H.JPG"].action == "renamed" and "AM31SUHR" in issues["AM31/AM31H.JPG"].reason
    assert {"AF31SAHL", "AM31SUHR"} <= keys
    sample = next(s for s in ds.samples if s.key == "AM31SUHR")
    assert (sample.label, sample.person, sample.session, sample.angle) == (Emotion.SURPRISED, "M31", "A", "HR")
    # near-black and corrupt images are found by content and excluded
    for file, kind in defects.items():
        if kind in ("near-black", "corrupt"):
            assert issues[file].action == "excluded" and kind in issues[file].reason
            assert file.split("/")[1][:-4] not in keys
        if kind == "oversized":
            assert issues[file].action == "kept" and "970x633" in issues[file].reason
            assert file.split("/")[1][:-4] in keys
    assert len(ds) == 3 * 70 - 3
    counts = ds.counts()
    assert counts["person"] == {"F01": 67, "F31": 70, "M31": 70}  # F01 lost two near-black and one corrupt
    assert set(counts["angle"]) == {"FL", "HL", "S", "HR", "FR"} and set(counts["session"]) == {"A", "B"}


def test_angle_and_session_filters(kdef_tree):
    root, _ = kdef_tree
    ds = kdef.load(root, angles=("S",), sessions=("A",))
    assert {s.angle for s in ds.samples} == {"S"} and {s.session for s in ds.samples} == {"A"}
    assert len(ds) == 3 * 7


def test_lowercase_extension_and_stray_files(tmp_path):
    root = synthetic.write(tmp_path, ["F01", "M01"], width=48)
    f = root / "AF01" / "AF01HAS.JPG"
    f.rename(f.with_suffix(".jpg"))
    (root / "AF01" / "notes.txt").write_text("x")
    (root / "AF01" / "AF01HAPROFILE.JPG").write_bytes(b"")
    (root / "README.txt").write_text("x")
    ds = kdef.load(root)
    assert "AF01HAS" in {s.key for s in ds.samples}
    reasons = {i.file: i.reason for i in ds.issues}
    assert reasons["AF01/notes.txt"] == "not an image file"
    assert "naming" in reasons["AF01/AF01HAPROFILE.JPG"]
    assert reasons["README.txt"] == "not inside a person folder"


@pytest.mark.parametrize("make", ["missing", "empty", "flat", "wrong_names"])
def test_not_kdef_shaped_is_one_clear_error(tmp_path, make):
    path = tmp_path / "data"
    if make != "missing":
        path.mkdir()
    if make == "flat":
        cv2.imwrite(str(path / "face.jpg"), np.full((20, 20, 3), 128, np.uint8))
    if make == "wrong_names":
        (path / "AF01").mkdir()
        cv2.imwrite(str(path / "AF01" / "face.jpg"), np.full((20, 20, 3), 128, np.uint8))
    with pytest.raises(DatasetError) as info:
        kdef.load(path)
    assert "\n" not in str(info.value)


def test_a_set_of_only_broken_images_says_why_each_was_excluded(tmp_path):
    root = synthetic.write(tmp_path, ["F01"], width=48)
    for f in root.glob("*/*.JPG"):
        f.write_bytes(f.read_bytes()[:200])  # cut short
    with pytest.raises(DatasetError, match=r"^no usable KDEF images in .* and sessions A/B; "
                                           r"excluded: 70 corrupt \(truncated JPEG\)$"):
        kdef.load(root)


def test_partial_dataset_is_rejected(tmp_path):
    root = synthetic.write(tmp_path, ["F01", "M01"], width=48)
    for f in root.glob("*/*DI*.JPG"):
        f.unlink()
    ds = kdef.load(root)
    with pytest.raises(DatasetError, match="no images of DI"):
        ds.require_complete()


def test_synthetic_layout_and_expressions_differ(tmp_path):
    root = synthetic.write(tmp_path, 2, width=64)
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.JPG"))
    assert len(names) == 2 * 7 * 5 * 2
    assert "AF01/AF01AFS.JPG" in names and "BM01/BM01SUFR.JPG" in names
    happy = cv2.imread(str(root / "AF01" / "AF01HAS.JPG")).astype(np.float32)
    sad = cv2.imread(str(root / "AF01" / "AF01SAS.JPG")).astype(np.float32)
    # the expressions differ, but only in small details (the rest of the image is the same person)
    diff = np.abs(happy - sad).mean(axis=2)
    assert diff.max() > 60 and (diff > 30).mean() < 0.05


def test_a_drawn_set_appears_whole_and_replaces_an_earlier_one(tmp_path, monkeypatch):
    draw, drawn = synthetic.draw, []

    def stopped_after_ten(*args):
        if len(drawn) == 10:
            raise KeyboardInterrupt  # a Ctrl-C while drawing
        drawn.append(1)
        return draw(*args)

    monkeypatch.setattr(synthetic, "draw", stopped_after_ten)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write(tmp_path, 2, width=48)
    assert not (tmp_path / "KDEF").exists()  # nothing a later run would take for the whole set
    monkeypatch.undo()
    synthetic.write(tmp_path, 3, width=48)
    assert len(list((tmp_path / "KDEF").rglob("*.JPG"))) == 3 * 70
    root = synthetic.write(tmp_path, 2, width=48)  # fewer people: the earlier set's third is gone
    assert sorted(p.name for p in root.iterdir()) == ["AF01", "AM01", "BF01", "BM01"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["KDEF", "SYNTHETIC.txt"]


def test_a_drawn_set_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot write the synthetic set into"):
        synthetic.write(tmp_path / "file" / "set", 2, width=48)
