"""Restoration quality in the study: how close each shown face is to its HR crop, and whether that predicts accuracy.

For every width, the plain LR face (enlarged as the classifier sees it) and each restorer's output are scored
against the HR face crop of the same image with the metrics of ``quality.metrics`` (:mod:`fersr_stream.quality`:
PSNR, SSIM, LPIPS, identity similarity), on the test faces of the folds run, each face once. Per-face scores are
kept in ``quality/<condition>.npz`` (a rerun measures only what is new); ``quality.csv`` holds mean and std per
width x restorer; ``figures/gain_vs_quality.png`` plots the accuracy a restorer gains over plain LR (HR-trained
model, mean over folds) against each metric, with Spearman's rho over the restorer points in each panel title.

Network metrics need registry weights. ``quality.missing`` says what a run does when they are not cached: skip
the metric (default; the run and the report name the ``fersr-models download`` command that adds it), stop
before anything is written, or download them.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fersr_stream.errors import ConfigError, WeightsError
from fersr_stream.quality import METRICS

log = logging.getLogger(__name__)
MISSING = ("skip", "stop", "download")
LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "lpips": "LPIPS (lower = closer)", "identity": "identity (cosine)"}


@dataclass(frozen=True)
class QualityConfig:
    """Restoration quality. ``missing``: skip | stop | download, for metrics whose weights are not cached."""

    metrics: tuple[str, ...] = METRICS.names()
    missing: str = "skip"
    batch: int = 32  # faces per metric call

    def __post_init__(self) -> None:
        for name in self.metrics:
            if name not in METRICS:
                raise ConfigError(f"config key 'quality.metrics': unknown value {name!r}; "
                                  f"choose from {', '.join(METRICS.names())}")
        if len(set(self.metrics)) < len(self.metrics):
            raise ConfigError(f"config key 'quality.metrics' names a metric twice: {list(self.metrics)}")
        if self.missing not in MISSING:
            raise ConfigError(f"config key 'quality.missing': unknown value {self.missing!r}; "
                              f"choose from {', '.join(MISSING)}")
        if self.batch < 1:
            raise ConfigError("config key 'quality.batch' must be >= 1")


def download_command(absent: dict[str, list[str]]) -> str:
    names = sorted({w for weights in absent.values() for w in weights})
    return f"fersr-models download {' '.join(names)}"


def ready(config: QualityConfig, quiet: bool = False) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """The metrics a run can measure, and the skipped ones with the weights they lack.

    Raises:
        WeightsError: ``missing: stop`` and some weights are not cached (the message names the command).
    """
    from fersr_stream import quality as fquality

    absent = fquality.missing(config.metrics)
    if absent and config.missing == "download":
        fquality.fetch(tuple(absent), quiet=quiet)
        absent = fquality.missing(config.metrics)
    if absent and config.missing == "stop":
        raise WeightsError(f"quality metrics {', '.join(absent)} need weights that are not cached; "
                           f"`{download_command(absent)}` adds them (or set quality.missing=skip)")
    if absent:
        log.warning("quality metrics %s skipped: weights not cached; `%s` adds them", ", ".join(absent),
                    download_command(absent))
    return tuple(m for m in config.metrics if m not in absent), absent


# ------------------------------------------------------------------------------------------- measuring
def measure(study, metrics: tuple[str, ...], skipped: dict[str, list[str]], chunk: int = 256) -> Path:
    """Score every LR and restored condition of ``study`` against the HR crops of its test faces; write
    ``quality.csv`` and ``quality.json`` into the run folder and return the CSV's path.

    Faces go in chunks; each metric prepares a chunk's HR references once (FaceNet's embeddings, LPIPS's features)
    for every condition that still lacks its scores.
    """
    c = study.config
    folds = c.protocol.only_folds if c.protocol.only_folds is not None else range(len(study.folds))
    images = tuple(sorted({k for f in folds for k in study.folds[f].test}))
    idx = study.faceset.index(images)
    keys = [study.keys[i] for i in idx]
    conditions = [t for t in study.conditions() if t.width is not None]
    paths = {t.tag: study.folder / "quality" / f"{t.tag}.npz" for t in conditions}
    scores = {t.tag: _cached(paths[t.tag], keys, metrics) for t in conditions}
    todo = {t.tag: [m for m in metrics if m not in scores[t.tag]] for t in conditions}
    loaded = {m: METRICS.get(m).load(study.device) for m in metrics if any(m in v for v in todo.values())}
    fresh = {tag: {m: [] for m in wanted} for tag, wanted in todo.items()}
    for start in range(0, len(idx) if loaded else 0, chunk):
        crops = np.asarray(study.faceset.crops[idx[start:start + chunk]])
        part = keys[start:start + chunk]
        prepared = {m: _batches(crops, c.quality.batch, metric.prepare) for m, metric in loaded.items()}
        for t in conditions:
            if not todo[t.tag]:
                continue
            if t.restorer is not None:
                study.cache.fill(t, crops, part)
            shown = study.cache.load(t, crops, part)
            for m in todo[t.tag]:
                runs = _batches(shown, c.quality.batch, lambda x: x)
                fresh[t.tag][m] += [loaded[m].compare(x, ref) for x, ref in zip(runs, prepared[m])]
    for t in conditions:
        if todo[t.tag]:
            scores[t.tag].update({m: np.concatenate(v) for m, v in fresh[t.tag].items()})
            paths[t.tag].parent.mkdir(parents=True, exist_ok=True)
            np.savez(paths[t.tag], keys=np.array(keys), images=np.array(images), **scores[t.tag])
    out = study.folder / "quality.csv"
    _write_csv(out, [_row(t, len(images), scores[t.tag], metrics) for t in conditions])
    blob = {"metrics": list(metrics), "skipped": skipped, "faces": len(images), "folds": list(folds),
            "command": download_command(skipped) if skipped else None}
    (study.folder / "quality.json").write_text(json.dumps(blob, indent=1))
    return out


def _batches(images: np.ndarray, batch: int, fn) -> list:
    """``fn`` of each run of ``batch`` images."""
    return [fn(images[i:i + batch]) for i in range(0, len(images), batch)]


def _cached(path: Path, keys: list[str], metrics: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per-face scores saved by an earlier run for the same faces (the metrics it measured)."""
    if not path.is_file():
        return {}
    with np.load(path) as saved:
        if list(saved["keys"]) != keys:
            return {}
        return {m: saved[m] for m in metrics if m in saved.files}


def _row(condition, faces: int, scores: dict[str, np.ndarray], metrics: tuple[str, ...]) -> dict:
    row = {"width": condition.width, "restorer": condition.restorer_name, "test": condition.tag, "faces": faces}
    for m in metrics:
        row[f"{m}_mean"] = float(np.mean(scores[m]))
        row[f"{m}_std"] = float(np.std(scores[m], ddof=1)) if len(scores[m]) > 1 else 0.0
    return row


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["width", "restorer", "test", "faces"])
        writer.writeheader()
        writer.writerows(rows)


def read(folder: Path) -> tuple[list[dict], dict]:
    """quality.csv's rows (numbers parsed) and quality.json of a run folder; ([], {}) where it has none."""
    folder = Path(folder)
    if not (folder / "quality.json").is_file() or not (folder / "quality.csv").is_file():
        return [], {}
    with open(folder / "quality.csv") as f:
        rows = [{k: (v if k in ("restorer", "test") else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
    for r in rows:
        r["width"], r["faces"] = int(r["width"]), int(r["faces"])
    return rows, json.loads((folder / "quality.json").read_text())


# ------------------------------------------------------------------------------------ the report's part
def gains(summary: list[dict]) -> list[dict]:
    """Accuracy gained over plain LR, per model x width x restorer, for models not trained on degraded faces
    (arms hr and zero-shot; mean over folds, from :func:`training.report.summarise` rows)."""
    acc = {(r["model"], r["width"], r["restorer"]): r["mean"] for r in summary
           if r["arm"] in ("hr", "zero-shot") and r["width"] is not None}
    return [{"model": m, "width": w, "restorer": r, "gain": a - acc[(m, w, "none")]}
            for (m, w, r), a in sorted(acc.items()) if r != "none" and (m, w, "none") in acc]


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho, or None with fewer than 3 points or a constant side."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(spearmanr(x, y).statistic)


def plot(path: Path, rows: list[dict], points: list[dict], metrics: list[str]) -> Path:
    """gain_vs_quality.png: one panel per metric; x the metric's mean over faces of a (width, restorer), y the
    accuracy it gains over plain LR; grey crosses mark plain LR itself (gain 0, not in rho). Numbers beside the
    points are widths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality = {(r["width"], r["restorer"]): r for r in rows}
    restorers = sorted({p["restorer"] for p in points})
    models = sorted({p["model"] for p in points})
    colours = {r: plt.get_cmap("tab10")(i % 10) for i, r in enumerate(restorers)}
    markers = dict(zip(models, "osD^v<>p*h"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.8 * len(metrics), 3.6), dpi=100, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        x, y = [], []
        for p in points:
            q = quality.get((p["width"], p["restorer"]))
            if q is None:
                continue
            x.append(q[f"{m}_mean"])
            y.append(100 * p["gain"])
            ax.scatter(x[-1], y[-1], color=colours[p["restorer"]], marker=markers[p["model"]], s=36)
            ax.annotate(f"{p['width']}", (x[-1], y[-1]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        for q in rows:
            if q["restorer"] == "none":
                ax.scatter(q[f"{m}_mean"], 0, color="grey", marker="x", s=30)
                ax.annotate(f"{q['width']}", (q[f"{m}_mean"], 0), fontsize=6, color="grey", xytext=(3, -9),
                            textcoords="offset points")
        rho = spearman(x, y)
        ax.axhline(0, color="black", lw=0.6)
        ax.margins(x=0.12, y=0.15)
        ax.set_title(f"{m}: Spearman ρ = " + (f"{rho:.2f}" if rho is not None else "n/a") + f" (n = {len(x)})",
                     fontsize=9)
        ax.set_xlabel(LABELS[m], fontsize=8)
        ax.ticklabel_format(axis="x", useOffset=False)  # near-equal values stay readable
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        ax.set_ylabel("accuracy gained over plain LR (pp)", fontsize=8)
    handles = [plt.Line2D([], [], color=colours[r], marker="o", ls="", label=r) for r in restorers]
    handles += [plt.Line2D([], [], color="black", marker=markers[m], ls="", label=m) for m in models]
    handles.append(plt.Line2D([], [], color="grey", marker="x", ls="", label="plain LR (gain 0)"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _cell(r: dict, m: str) -> str:
    digits = {"psnr": 2, "ssim": 3, "lpips": 3, "identity": 3}[m]
    return f"{r[f'{m}_mean']:.{digits}f} ± {r[f'{m}_std']:.{digits}f}"


def section(folder: Path, summary: list[dict]) -> str:
    """REPORT.md's restoration-quality section (and figures/gain_vs_quality.png); empty for a run without
    quality.csv."""
    folder = Path(folder)
    rows, info = read(folder)
    if not info:
        return ""
    metrics = info["metrics"]
    parts = ["## Restoration quality", "",
             f"Each shown face against the HR crop of the same image, on the {info['faces']} test faces of "
             f"fold{'s' if len(info['folds']) > 1 else ''} {', '.join(map(str, info['folds']))} (each face once), "
             "mean ± std over faces; `none` is plain LR as the "
             "classifier sees it. Per-face scores: `quality/<condition>.npz`; this table: `quality.csv`.", ""]
    if info.get("skipped"):
        parts += [f"_Not measured: {', '.join(info['skipped'])} (weights not cached); `{info['command']}` adds "
                  "them, then `fersr-train run` again (or set `quality.missing=download`)._", ""]
    if metrics and rows:
        parts += ["| width | restorer | faces | " + " | ".join(LABELS[m] for m in metrics) + " |",
                  "|---|---|---|" + "---|" * len(metrics)]
        parts += [f"| {r['width']} px | {r['restorer']} | {r['faces']} | " + " | ".join(_cell(r, m) for m in metrics)
                  + " |" for r in rows]
        points = gains(summary)
        if points:
            plot(folder / "figures" / "gain_vs_quality.png", rows, points, metrics)
            rhos = []
            for m in metrics:
                pairs = [(q[f"{m}_mean"], p["gain"]) for p in points for q in rows
                         if (q["width"], q["restorer"]) == (p["width"], p["restorer"])]
                rho = spearman(*zip(*pairs)) if pairs else None
                rhos.append(f"{m} {rho:.2f}" if rho is not None else f"{m} n/a")
            parts += ["", "Accuracy gained over plain LR (HR-trained model, mean over folds) against each metric, one "
                      "point per model x width x restorer (the number beside it is the width): "
                      f"Spearman ρ {', '.join(rhos)} (n/a: fewer than 3 points or a constant side). Across widths "
                      "the points also differ in how much there was to recover, so ρ is descriptive, not a test.", "",
                      "![gain vs. quality](figures/gain_vs_quality.png)"]
    return "\n".join(parts) + "\n"
