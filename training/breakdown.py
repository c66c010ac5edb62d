"""Breakdowns of an experiment's results: per training seed, per KDEF view angle, detected vs. fallback face
box, and per-class precision, recall and F1.

Like :mod:`training.report`, everything is rebuilt from files in the experiment folder: the evaluation cells
(``cells/**/test-*.json``, with per-image keys, labels and predictions), ``images.json`` (what the dataset
records per image: angle, session, person, official part) and ``faces.json`` (the images a detector found no
face in). Angle and detection breakdowns pool every run's images (n counts an image once per seed); the
per-seed table averages over folds.

Files: ``breakdown/seeds.csv``, ``breakdown/angles.csv``, ``breakdown/detection.csv``, ``per_class.csv``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from fersr_stream.classify.labels import KDEF_CODES

ANGLES = ("FL", "HL", "S", "HR", "FR")  # KDEF's views, left profile to right profile
CONDITION = ("model", "arm", "train", "test")  # what one row of the main table is about
IMAGE_FIELDS = ("angle", "session", "person", "part")


def image_table(dataset) -> dict[str, dict]:
    """images.json: per sample key, the fields the dataset records (angle, session, person, part) that are set."""
    out = {}
    for s in dataset.samples:
        fields = {name: getattr(s, name) for name in IMAGE_FIELDS if getattr(s, name) is not None}
        out[s.key] = fields
    return out


def _condition(cell: dict) -> tuple:
    return tuple(cell[k] for k in CONDITION)


def _rank(cells: list[dict]) -> dict[tuple, int]:
    """Each condition's place in the main table's order (``cells`` come sorted as the report sorts them)."""
    rank: dict[tuple, int] = {}
    for c in cells:
        rank.setdefault(_condition(c), len(rank))
    return rank


def by_image_group(cells: list[dict], group_of: Callable[[str], str | None], name: str) -> list[dict]:
    """Accuracy per condition and image group, pooled over runs.

    Args:
        group_of: a sample key's group (e.g. its view angle), or None to leave the image out.
        name: the group's column name in the rows.

    Returns:
        Rows of model, arm, train, test, ``name``, n (images x runs), correct, accuracy.
    """
    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for c in cells:
        for key, label, pred in zip(c["keys"], c["labels"], c["preds"]):
            group = group_of(key)
            if group is not None:
                tally = counts[(*_condition(c), group)]
                tally[0] += 1
                tally[1] += int(label == pred)
    return [{**dict(zip(CONDITION, key[:-1])), name: key[-1], "n": n, "correct": right, "accuracy": right / n}
            for key, (n, right) in counts.items()]


def angles(cells: list[dict], images: dict[str, dict]) -> list[dict]:
    """Accuracy per KDEF view angle (empty when the dataset records no angles)."""
    rows = by_image_group(cells, lambda key: images.get(key, {}).get("angle"), "angle")
    rank = _rank(cells)
    return sorted(rows, key=lambda r: (rank[_condition(r)], ANGLES.index(r["angle"]) if r["angle"] in ANGLES else 9))


def detection(cells: list[dict], found: dict) -> list[dict]:
    """Accuracy on faces the detector found vs. those that got the fallback box (``faces.json``); empty when no
    detector ran (every face was cut the same way)."""
    if found.get("crop") != "detect":
        return []
    missed = set(found.get("not_detected_keys", ()))
    rows = by_image_group(cells, lambda key: "fallback" if key in missed else "detected", "box")
    rank = _rank(cells)
    return sorted(rows, key=lambda r: (rank[_condition(r)], r["box"] != "detected"))


def seeds(cells: list[dict]) -> list[dict]:
    """Mean accuracy and macro-F1 over folds per condition and training seed."""
    from .report import macro_f1

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cells:
        groups[(*_condition(c), c.get("seed", 0))].append(c)
    rows = []
    for key, members in groups.items():
        rows.append({**dict(zip(CONDITION, key[:-1])), "seed": key[-1], "folds": len(members),
                     "accuracy": float(np.mean([m["accuracy"] for m in members])),
                     "macro_f1": float(np.mean([macro_f1(m["confusion"]) for m in members]))})
    rank = _rank(cells)
    return sorted(rows, key=lambda r: (rank[_condition(r)], r["seed"]))


def per_class(cells: list[dict]) -> list[dict]:
    """Precision, recall and F1 per emotion and condition, from the confusion matrices summed over runs.

    An emotion without test images (CK+48's neutral) has empty recall and F1; one never predicted, empty
    precision.
    """
    sums: dict[tuple, np.ndarray] = {}
    for c in cells:
        sums[_condition(c)] = sums.get(_condition(c), np.zeros((7, 7), np.int64)) + np.array(c["confusion"])
    rows = []
    for key, conf in sums.items():
        for i, code in enumerate(KDEF_CODES):
            tp, support, predicted = int(conf[i, i]), int(conf[i].sum()), int(conf[:, i].sum())
            precision = tp / predicted if predicted else None
            recall = tp / support if support else None
            f1 = 2 * tp / (support + predicted) if support else None
            rows.append({**dict(zip(CONDITION, key)), "emotion": code, "support": support,
                         "precision": precision, "recall": recall, "f1": f1})
    return rows


def pivot(rows: list[dict], column: str, columns: tuple | list, value: str = "accuracy", fmt: str = "{:.1f} %",
          scale: float = 100.0) -> str:
    """A markdown table: one line per condition, one column per value of ``column``; n per cell where rows have
    one."""
    table: dict[tuple, dict] = defaultdict(dict)
    for r in rows:
        title = f"seed {r[column]}" if column == "seed" else r[column]  # a bare number is no column title
        table[_condition(r)][title] = r
    lines = ["| model | arm | train | test | " + " | ".join(str(c) for c in columns) + " |",
             "|---|---|---|---|" + "---|" * len(columns)]
    for key, cells in table.items():
        shown = []
        for col in columns:
            r = cells.get(col)
            if r is None or r[value] is None:
                shown.append("–")
                continue
            text = fmt.format(scale * r[value])
            shown.append(f"{text} (n={r['n']})" if "n" in r else text)
        lines.append("| " + " | ".join(str(k) for k in key) + " | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write(folder: Path, cells: list[dict]) -> str:
    """Write the breakdown CSVs and per_class.csv; return REPORT.md's breakdown section (markdown)."""
    from .report import _csv

    folder = Path(folder)
    out = folder / "breakdown"
    out.mkdir(parents=True, exist_ok=True)
    by_seed, by_angle = seeds(cells), angles(cells, _read_json(folder / "images.json"))
    by_box, classes = detection(cells, _read_json(folder / "faces.json")), per_class(cells)
    for name, rows in (("seeds", by_seed), ("angles", by_angle), ("detection", by_box)):
        _csv(out / f"{name}.csv", rows)
    _csv(folder / "per_class.csv", classes)
    return _section(by_seed, by_angle, by_box, classes, _read_json(folder / "faces.json"))


def _section(by_seed, by_angle, by_box, classes, found: dict) -> str:
    """REPORT.md's breakdowns: per seed, per view angle, detected vs. fallback box, per-class F1."""
    seed_ids = sorted({r["seed"] for r in by_seed})
    parts = ["## Breakdowns", "",
             "### Per training seed (mean over folds; `breakdown/seeds.csv`)", "",
             pivot(by_seed, "seed", [f"seed {s}" for s in seed_ids], "accuracy"), ""]
    if by_angle:
        shown = [a for a in ANGLES if any(r["angle"] == a for r in by_angle)]
        parts += ["### Per view angle (pooled over runs; `breakdown/angles.csv`)", "",
                  "KDEF's views: FL full left profile, HL half left, S straight, HR half right, FR full right.", "",
                  pivot(by_angle, "angle", shown), ""]
    if by_box:
        parts += ["### Detected vs. fallback face box (pooled over runs; `breakdown/detection.csv`)", "",
                  f"Faces the detector ({found.get('detector')}) found vs. those cut with {found.get('fallback')}.",
                  "", pivot(by_box, "box", ["detected", "fallback"]), ""]
    else:
        parts += ["### Detected vs. fallback face box", "",
                  f"- No detector ran (`faces.crop` = {found.get('crop', '?')}): every face was cut the same way.", ""]
    parts += ["### Per-class F1 (pooled over runs; precision, recall and F1 in `per_class.csv`)", "",
              pivot(classes, "emotion", KDEF_CODES, "f1"), ""]
    return "\n".join(parts)
