"""Tables, figures and REPORT.md of an experiment folder, rebuilt from its per-cell metrics JSON.

Everything here reads ``cells/**/test-*.json`` only, so ``fersr-train report DIR`` can redo it at any time.
McNemar's test compares, image by image, the restored faces against the plain LR faces of the same model,
fold, seed and width (exact binomial test on the discordant pairs), per run and pooled over runs.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from fersr_stream.classify.labels import KDEF_CODES
from fersr_stream.config import read_yaml
from fersr_stream.errors import ConfigError

from . import breakdown

# what every cell file (phases.metrics) holds, in every layout so far: a file without them is damaged
CELL_KEYS = frozenset({"model", "arm", "train", "test", "width", "restorer", "fold", "n", "accuracy", "confusion",
                       "keys", "labels", "preds"})
ROW_KEYS = ("model", "arm", "train", "test", "phase", "width", "restorer", "fold", "seed", "n", "accuracy", "macro_f1")


def load_cells(folder: Path) -> list[dict]:
    """Every evaluation cell's metrics, sorted by model, arm, test width, restorer and fold.

    Cells live in ``cells/<model>/<align>/train-*/fold*/`` (or, in folders written before alignment was a choice,
    ``cells/<model>/train-*/fold*/``)."""
    paths = sorted(Path(folder).glob("cells/*/*/fold*/test-*.json")) + \
        sorted(Path(folder).glob("cells/*/*/*/fold*/test-*.json"))
    return sorted((_cell(p) for p in paths), key=_order)


def _cell(path: Path) -> dict:
    """One cell's metrics; a file damaged from outside (the study writes them whole) is one clear error."""
    try:
        cell = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"{exc.__class__.__name__}: {exc}"
    else:
        if isinstance(cell, dict) and CELL_KEYS <= cell.keys():
            return cell
        problem = "not a cell's metrics"
    raise ConfigError(f"{path} is damaged ({problem}); delete it and run the study again (`fersr-train run`) to "
                      f"recompute that cell")


def _order(c: dict):
    return (*_order_row(c), c.get("seed", 0), c["fold"])


def summarise(cells: list[dict]) -> list[dict]:
    """Mean and std of accuracy (and macro-F1) over runs per (model, arm, train, test condition).

    A run is one fold trained with one seed; ``std`` is None for a single run (no spread to show).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for c in cells:
        groups[(c["model"], c["arm"], c["train"], c["test"])].append(c)
    rows = []
    for members in groups.values():
        acc = np.array([m["accuracy"] for m in members])
        f1 = np.array([macro_f1(m["confusion"]) for m in members])
        first = members[0]
        rows.append({"model": first["model"], "arm": first["arm"], "phase": first["phase"], "train": first["train"],
                     "test": first["test"], "width": first["width"], "restorer": first["restorer"],
                     "runs": len(members), "folds": len({m["fold"] for m in members}),
                     "seeds": len({m.get("seed", 0) for m in members}),
                     "mean": float(acc.mean()), "std": _std(acc), "f1_mean": float(f1.mean()), "f1_std": _std(f1)})
    return sorted(rows, key=_order_row)


def _std(values: np.ndarray) -> float | None:
    """Sample standard deviation, None for a single value."""
    return float(values.std(ddof=1)) if len(values) > 1 else None


def macro_f1(confusion) -> float:
    """Mean F1 over the emotions present in a (7, 7) confusion matrix (true rows, predicted columns)."""
    conf = np.asarray(confusion, np.float64)
    tp, support, predicted = np.diag(conf), conf.sum(1), conf.sum(0)
    present = support > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=(support + predicted) > 0)
    return float(f1[present].mean()) if present.any() else float("nan")


def percent(mean: float, std: float | None, n: int) -> str:
    """``45.0 ± 3.1 %`` over several runs, ``22.9 % (n=1)`` for one (never a spread of 0 from one number)."""
    if std is None:
        return f"{100 * mean:.1f} % (n={n})"
    return f"{100 * mean:.1f} ± {100 * std:.1f} %"


def runs_label(row: dict) -> str:
    """``4 (2 folds × 2 seeds)``, or the number alone when there is one seed."""
    if row["seeds"] > 1:
        folds = f"{row['folds']} fold" + ("s" if row["folds"] > 1 else "")
        return f"{row['runs']} ({folds} × {row['seeds']} seeds)"
    return str(row["runs"])


def _order_row(r: dict):
    # training conditions in natural order: lr8 before lr16
    train = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", r["train"]))
    return (r["model"], r["arm"], train, -1 if r["width"] is None else r["width"],
            {"hr": 0, "none": 1}.get(r["restorer"], 2), r["restorer"])


def mcnemar(cells: list[dict]) -> list[dict]:
    """Restored vs. plain LR on the same images: per run (fold and seed) and pooled ("all"), exact two-sided
    p-values. Pairs are matched within a run: the restored and the LR test of one trained model.

    Columns ``b``: right on LR, wrong restored; ``c``: wrong on LR, right restored.
    """
    lr = {(c["model"], c["train"], c["fold"], c.get("seed", 0), c["width"]): c for c in cells
          if c["width"] is not None and c["restorer"] == "none"}
    pooled: dict[tuple, dict] = {}
    rows = []
    for c in cells:
        if c["width"] is None or c["restorer"] == "none":
            continue
        base = lr.get((c["model"], c["train"], c["fold"], c.get("seed", 0), c["width"]))
        if base is None:  # an extension arm trained on restored faces has no LR twin
            continue
        right_lr, right_r = _correct(base), _correct(c)
        shared = sorted(set(right_lr) & set(right_r))
        counts = {"n": len(shared), "lr": sum(right_lr[k] for k in shared), "r": sum(right_r[k] for k in shared),
                  "b": sum(right_lr[k] and not right_r[k] for k in shared),
                  "c": sum(right_r[k] and not right_lr[k] for k in shared)}
        key = (c["model"], c["train"], c["width"], c["restorer"])
        rows.append(_mcnemar_row(key, c["fold"], c.get("seed", 0), counts))
        total = pooled.setdefault(key, dict.fromkeys(counts, 0))
        for name, value in counts.items():
            total[name] += value
    rows += [_mcnemar_row(key, "all", "all", counts) for key, counts in pooled.items()]
    return rows


def _mcnemar_row(key: tuple, fold, seed, counts: dict) -> dict:
    from scipy.stats import binomtest

    discordant = counts["b"] + counts["c"]
    n = max(counts["n"], 1)
    return {"model": key[0], "train": key[1], "width": key[2], "restorer": key[3], "fold": fold, "seed": seed,
            "n": counts["n"], "acc_lr": counts["lr"] / n, "acc_restored": counts["r"] / n, "b": counts["b"],
            "c": counts["c"], "p": float(binomtest(counts["c"], discordant, 0.5).pvalue) if discordant else 1.0}


def _correct(cell: dict) -> dict[str, bool]:
    return {k: label == p for k, label, p in zip(cell["keys"], cell["labels"], cell["preds"])}


def per_class(cells: list[dict]) -> list[dict]:
    """Per-emotion precision, recall and F1 pooled over runs (see :func:`training.breakdown.per_class`)."""
    return breakdown.per_class(cells)


def _csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())


def markdown_table(rows: list[dict]) -> str:
    """The main table: one line per model x arm x phase x width x restorer; accuracy and macro-F1 over runs."""
    lines = ["| model | arm | phase | train | test width | restorer | accuracy | macro-F1 | runs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        width = "HR" if r["width"] is None else f"{r['width']} px"
        restorer = "—" if r["restorer"] == "hr" else r["restorer"]  # HR faces: nothing to restore
        lines.append(f"| {r['model']} | {r['arm']} | {r['phase']} | {r['train']} | {width} | {restorer} | "
                     f"{percent(r['mean'], r['std'], r['runs'])} | {percent(r['f1_mean'], r['f1_std'], r['runs'])} "
                     f"| {runs_label(r)} |")
    return "\n".join(lines)


def _row_value(cell: dict, key: str):
    """A results.csv value of one evaluation cell (cells written before seeds were a key ran seed 0)."""
    if key == "macro_f1":
        return macro_f1(cell["confusion"])
    return cell.get(key, 0) if key == "seed" else cell[key]


def _mcnemar_table(rows: list[dict]) -> str:
    pooled = [r for r in rows if r["fold"] == "all"]
    lines = ["| model | width | restorer | n | LR acc | restored acc | b (LR only) | c (restored only) | p |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in pooled:
        lines.append(f"| {r['model']} | {r['width']} px | {r['restorer']} | {r['n']} | {100 * r['acc_lr']:.1f} % | "
                     f"{100 * r['acc_restored']:.1f} % | {r['b']} | {r['c']} | {r['p']:.3g} |")
    return "\n".join(lines)


def plot_confusions(cells: list[dict], folder: Path) -> list[Path]:
    """One confusion matrix (row-normalised, pooled over folds) per model x training x test condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sums: dict[tuple, np.ndarray] = {}
    for c in cells:
        key = (c["model"], c["train"], c["test"])
        sums[key] = sums.get(key, np.zeros((7, 7), np.int64)) + np.array(c["confusion"])
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for (model, train, test), conf in sums.items():
        norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=100)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(7):
            for j in range(7):
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(7), KDEF_CODES)
        ax.set_yticks(range(7), KDEF_CODES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{model}, train {train}, test {test}", fontsize=8)
        fig.tight_layout()
        path = folder / f"{model}_train-{train}_test-{test}.png"
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out


def plot_widths(rows: list[dict], folder: Path, lr_label: str = "LR (no restoration)") -> list[Path]:
    """Accuracy vs. face-crop width per model: one line per restorer (plain LR = none), HR dashed, chance dotted.

    Args:
        lr_label: legend entry of the plain LR line (the report names its interpolation).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
        for arm in ("hr", "zero-shot"):
            lines: dict[str, list] = defaultdict(list)
            for r in mine:
                if r["arm"] == arm and r["width"] is not None:
                    lines[r["restorer"]].append((r["width"], r["mean"], r["std"] or 0.0))
            for name, points in sorted(lines.items(), key=lambda kv: (kv[0] != "none", kv[0])):
                w, m, s = (np.array(v) for v in zip(*sorted(points)))
                ax.errorbar(w, m, yerr=s, marker="o", capsize=3, label=lr_label if name == "none" else name)
            hr = [r for r in mine if r["arm"] == arm and r["width"] is None]
            if hr:
                ax.axhline(hr[0]["mean"], ls="--", color="gray", label=f"HR ({100 * hr[0]['mean']:.0f} %)")
        for arm, style in (("lr", ":"), ("restored", "-.")):
            lines = defaultdict(list)
            for r in mine:
                if r["arm"] == arm:
                    lines[r["restorer"]].append((r["width"], r["mean"]))
            for name, points in sorted(lines.items()):
                w, m = (np.array(v) for v in zip(*sorted(points)))
                ax.plot(w, m, style, marker="x", label=f"trained on {'LR' if name == 'none' else name}")
        ax.axhline(1 / len(KDEF_CODES), ls=":", color="black", lw=1, label="chance (1/7)")
        ax.set_xscale("log", base=2)
        widths = sorted({r["width"] for r in mine if r["width"] is not None})
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_ylim(0, 1)
        ax.set_xlabel("face crop width in the low-resolution image (px)")
        ax.set_ylabel("accuracy (mean ± std over runs)")
        ax.set_title(model)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"accuracy_vs_width_{model}.png"
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out


def example_grid(path: Path, rows: list[tuple[str, list[np.ndarray]]], columns: list[str]) -> Path:
    """Save a grid: one row per emotion, one column per condition (HR / LR / each restorer).

    Args:
        rows: (emotion code, [(S, S, 3) uint8 RGB per column]).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.4 * len(columns), 1.4 * len(rows)), dpi=100,
                             squeeze=False)
    for i, (code, images) in enumerate(rows):
        for j, image in enumerate(images):
            ax = axes[i, j]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=7)
            if j == 0:
                ax.set_ylabel(code)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write(folder: str | Path) -> Path:
    """Rebuild results.csv, results.md, per_class.csv, mcnemar.csv, hypothesis.csv, breakdown/, figures and
    REPORT.md; returns REPORT.md."""
    folder = Path(folder)
    found = json.loads((folder / "faces.json").read_text()) if (folder / "faces.json").is_file() else {}
    every = load_cells(folder)
    if not every:  # a run stopped before its first cell: an empty report would read as a finished one
        raise ConfigError(f"{folder} has no finished evaluation cells yet; `fersr-train run` with its config goes "
                          f"on and writes the report")
    cells, ablation = split_alignments(every, found.get("align", "box"))
    rows = summarise(cells)
    tests = mcnemar(cells)
    _csv(folder / "results.csv", [{k: _row_value(c, k) for k in ROW_KEYS} for c in cells])
    _csv(folder / "mcnemar.csv", tests)
    table = markdown_table(rows)
    (folder / "results.md").write_text(table + "\n")
    saved = folder / "config.yaml"
    cfg = read_yaml(saved, "the run's config") if saved.is_file() else {}
    figures = folder / "figures"
    confusions = plot_confusions(cells, figures / "confusion")
    plots = plot_widths(rows, figures, f"LR, no restoration ({lr_interpolation(cfg)})")
    breakdowns = breakdown.write(folder, cells)  # breakdown/*.csv and per_class.csv
    report = folder / "REPORT.md"
    from . import quality, stats

    views = found.get("by_view", [])
    _csv(folder / "faces_by_view.csv", views)
    compared = compare_alignments(cells, ablation)
    _csv(folder / "ablation.csv", compared)
    extra = [stats.section(folder, cells, cfg), quality.section(folder, rows), breakdowns]
    report.write_text(_report_text(folder, cfg, tests, table, plots, confusions, extra)
                      + _faces_sections(views, compared))
    return report


def split_alignments(cells: list[dict], main: str) -> tuple[list[dict], list[dict]]:
    """(the main run's cells, the alignment ablation's): cells framed by ``main`` (faces.json's ``align``; cells
    that do not say come from before alignment was a choice, and are the main run's) and the others."""
    cells = [c if "align" in c else {**c, "align": main} for c in cells]
    return [c for c in cells if c["align"] == main], [c for c in cells if c["align"] != main]


def compare_alignments(cells: list[dict], ablation: list[dict]) -> list[dict]:
    """Landmark-aligned vs. box-cut faces: per model, test condition and alignment pair, the mean accuracy of
    each over the folds both ran, and the difference (landmarks - box) in percentage points."""
    main = {(c["model"], c["arm"], c["test"], c["fold"]): c for c in cells if c["train"] == "hr"}
    pairs: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for c in ablation:
        twin = main.get((c["model"], c["arm"], c["test"], c["fold"]))
        if twin is not None:
            pairs[(c["model"], c["arm"], c["test"], twin["align"], c["align"])].append((twin, c))
    rows = []
    for (model, arm, test, one, other), members in sorted(pairs.items(), key=lambda kv: _order(kv[1][0][0])):
        acc = {one: np.mean([a["accuracy"] for a, _ in members]), other: np.mean([b["accuracy"] for _, b in members])}
        first = members[0][0]
        rows.append({"model": model, "arm": arm, "test": test, "width": first["width"], "restorer": first["restorer"],
                     "folds": len(members), "landmarks": float(acc.get("landmarks", np.nan)),
                     "box": float(acc.get("box", np.nan)),
                     "difference_pp": float(100 * (acc.get("landmarks", np.nan) - acc.get("box", np.nan)))})
    return rows


def _faces_sections(views: list[dict], compared: list[dict]) -> str:
    """REPORT.md's tables of the faces found per KDEF view and of the alignment ablation."""
    parts = ["", "## Faces found per view", ""]
    if views:
        parts += ["How each face was cut: aligned by the detector's landmarks, a square around the detector's box "
                  "(no landmarks, or faces.align=box), or the no-detector crop (nothing found). "
                  "Also in `faces_by_view.csv`.", "",
                  "| view | images | detected | landmarks | detector box | fallback box |", "|---|---|---|---|---|---|"]
        parts += [f"| {v['view']} | {v['images']} | {v['detected']} | {v['landmarks']} | {v['detector_box']} | "
                  f"{v['fallback_box']} |" for v in views]
    else:
        parts.append("_Not recorded (the run folder's `faces.json` has no per-view counts)._")
    parts += ["", "## Aligned by landmarks vs. box", ""]
    if compared:
        fallback = views[-1]["fallback_box"] if views and views[-1]["view"] == "all" else None
        same = (f" The {fallback} of {views[-1]['images']} faces the detector missed get the same fallback box in "
                "both arms, so the difference comes from the others." if fallback else "")
        parts += ["The same model trained and tested on faces aligned to the FFHQ 5-point template from their "
                  "landmarks, and on square crops around the detector's box (`ablation.*`: the `hr` arm of "
                  "`ablation.models`, tested on HR and at `ablation.widths`); mean accuracy over the folds both "
                  f"ran. Also in `ablation.csv`.{same}", "",
                  "| model | arm | test width | restorer | aligned by landmarks | box | difference (pp) | folds |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in compared:
            width = "HR" if r["width"] is None else f"{r['width']} px"
            parts.append(f"| {r['model']} | {r['arm']} | {width} | {r['restorer']} | {100 * r['landmarks']:.1f} % | "
                         f"{100 * r['box']:.1f} % | {r['difference_pp']:+.1f} | {r['folds']} |")
    else:
        parts.append("_No alignment ablation was run (`ablation.align` empty, or no detector: every face is a box "
                     "crop)._")
    return "\n".join(parts) + "\n"


def lr_interpolation(cfg: dict) -> str:
    """How the study enlarged plain LR faces (``phases.degrade.interpolation`` of a saved config)."""
    return cfg.get("phases", {}).get("degrade", {}).get("interpolation", "bilinear")


def _lr_note(cfg: dict) -> str:
    """What 'LR' and the 'bicubic' restorer each showed the classifier (they differ by design)."""
    interp = lr_interpolation(cfg)
    note = (f"- LR vs. `bicubic`: a plain LR face (phase 2) is the LR image enlarged back to the crop size with "
            f"{interp} interpolation, as a classifier's own input resize would do it (bilinear is torchvision "
            "`Resize`'s default, the transform of the transfer-learning code the published study built on). "
            "Every restorer starts from the LR image itself: `bicubic` enlarges it with bicubic interpolation, "
            "the classical super-resolution baseline, and the networks restore it at their 512 px input. So "
            "`bicubic` vs. LR measures the interpolation kernel alone, and a network's gain over `bicubic` is "
            "what learned restoration adds.")
    if interp == "bicubic":
        note += (" **Here `phases.degrade.interpolation` is bicubic, so LR and `bicubic` show nearly the same "
                 "images and their rows are not independent results.**")
    return note


def _faces_line(found: dict) -> str:
    """How the faces were cut, from faces.json."""
    crop = found.get("crop")
    if crop is None:
        return "- Faces: not recorded (the run folder has no `faces.json`)."
    if crop == "none":
        return "- Faces: the images are the faces (their centred square, resized; no detector)."
    if crop == "box":
        return "- Faces: KDEF's fixed face box (no detector)."
    return (f"- Faces: detector {found.get('detector')}; {found.get('not_detected')} images without a detection "
            f"got {found.get('fallback')} (`faces.json` lists them).")


def _protocol_line(proto: dict) -> str:
    if proto.get("split") == "official":
        return ("- Protocol: the dataset's official split (one fold: training, validation and test parts; where "
                f"the dataset has no validation part, a share {proto.get('val_fraction')} of its training part "
                "validates), validation for epoch selection and early stopping; the test part chooses nothing. "
                "Splits in `splits.json`.")
    only = proto.get("only_folds")
    ran = "" if only is None else (f" (of which only fold{'s' if len(only) > 1 else ''} "
                                   f"{', '.join(map(str, only))} ran: `protocol.only_folds`)")
    return (f"- Protocol: {proto.get('split')}-level {proto.get('folds')}-fold cross-validation{ran}, "
            f"validation share {proto.get('val_fraction')} of the training part for epoch selection and early "
            "stopping; the test fold chooses nothing. Splits in `splits.json`.")


def done(folder: Path) -> tuple[int, int] | None:
    """(evaluations finished, evaluations in the grid) of the config last run in ``folder`` (its ``grid.json``);
    None for a folder written before the grid was recorded."""
    grid = folder / "grid.json"
    if not grid.is_file():
        return None
    results = json.loads(grid.read_text())["results"]
    return sum((folder / r).is_file() for r in results), len(results)


def _partial_note(folder: Path) -> list[str]:
    """A stopped run's report says so before its numbers: they cover only part of the grid."""
    progress = done(folder)
    if progress is None or progress[0] == progress[1]:
        return []
    return [f"> **Partial.** {progress[0]} of the {progress[1]} evaluations this config runs are finished; "
            "`fersr-train run` with the same config goes on from them, and the tables below hold only the finished "
            "ones.", ""]


def _report_text(folder: Path, cfg: dict, tests, table, plots, confusions, extra: list[str] = ()) -> str:
    data = json.loads((folder / "data.json").read_text()) if (folder / "data.json").is_file() else {}
    found = json.loads((folder / "faces.json").read_text()) if (folder / "faces.json").is_file() else {}
    counts = data.get("counts", {})
    issues = data.get("issues", [])
    synthetic = cfg.get("data", {}).get("kind") == "synthetic" or data.get("synthetic", False)
    parts = [f"# {cfg.get('name', folder.name)}: restoration before emotion classification", "",
             *_partial_note(folder)]
    if synthetic:
        parts += ["> **Synthetic data.** These numbers come from procedurally drawn faces in KDEF's layout; they "
                  "show that the pipeline runs, not how KDEF or real faces behave.", ""]
    proto = cfg.get("protocol", {})
    train = cfg.get("train", {})
    parts += [
        "## Setup",
        f"- Data: {data.get('kind', '?')} at `{data.get('root', '?')}`: {counts.get('images', '?')} images "
        f"({', '.join(f'{k} {v}' for k, v in counts.get('emotion', {}).items())}); {len(issues)} files "
        "renamed, excluded or unusual (listed below and in `data.json`).",
        _faces_line(found),
        _protocol_line(proto),
        f"- Training: {', '.join(train.get('models', []))}; schedule {train.get('schedule')}, "
        f"{'ImageNet-pretrained' if train.get('pretrained') else 'random initialisation'}, "
        f"input {train.get('input_size')} px, up to {train.get('epochs')} epochs.",
        "- Phases: (1) train and test on HR face crops; (2) test the same model on crops degraded to a given "
        "width with fersr_stream's `degrade` (widths are those of the whole face crop, margin included, in the "
        "low-resolution image); (3) restore those LR images and test again."
        + (" `mini_xception` is the shipped FER2013 model, tested zero-shot (not trained here)."
           if "mini_xception" in train.get("models", []) else ""),
        _lr_note(cfg),
        "", "## Accuracy", "",
        "Accuracy and macro-F1 on each test condition: mean ± std over the runs (folds × seeds); one run shows its "
        "value and (n=1).", "", table, "",
        "## Restored vs. LR (McNemar, pooled over runs)", "",
        "Exact two-sided test on images classified differently, each restored test paired with the LR test of "
        "the same trained model (fold and seed); per-run rows in `mcnemar.csv`.", "",
        _mcnemar_table(tests) if tests else "_No restorer was tested._", "",
        *extra,
        "## Figures", ""]
    parts += [f"- ![{p.stem}](figures/{p.name})" for p in plots]
    examples = sorted((folder / "figures").glob("examples_*.png"))
    parts += [f"- Example faces: [{p.name}](figures/{p.name})" for p in examples]
    parts += [f"- Confusion matrices: `figures/confusion/` ({len(confusions)} files); per-class precision, recall "
              "and F1: `per_class.csv`; breakdowns: `breakdown/`; every cell's metrics: `cells/`; flat results: "
              "`results.csv`.", ""]
    parts += ["## Data issues", ""]
    parts += [f"- `{i['file']}`: {i['action']}: {i['reason']}" for i in issues] or ["- none"]
    return "\n".join(parts) + "\n"
