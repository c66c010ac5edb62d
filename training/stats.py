"""The seed's hypothesis tested: does restoring beat training on low resolution?

For each backbone, width and restorer four paired comparisons, image by image on the same test faces:

- (a) restorer vs. ``bicubic`` (both with the HR-trained model): what learned restoration adds;
- (b) HR-trained model + restoration vs. the model trained on LR (arm ``lr``): the seed's question;
- (c) HR-trained model + restoration vs. the model trained on restored faces (arm ``restored``);
- (d) HR-trained model + restoration vs. the same model on plain LR.

Each row claims "A beats B". Pairs are matched on (fold, seed, image). McNemar's test is exact (binomial on the
discordant pairs) or mid-p (``stats.mcnemar``); Holm-Bonferroni adjusts over the family, which is every row of the
table that ran (all backbones, widths, restorers and the four comparisons); rows whose arm did not run say so and
leave the family. 95 % intervals come from a bootstrap that resamples people (``persons.json``: images of one
person are not independent), or images where a dataset has no person ids. A row is *supported* only when its
Holm-adjusted p < alpha and the interval of A - B lies above 0, *contradicted* (B beats A) when both point the
other way, else *inconclusive* (no evidence either way).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fersr_stream.errors import ConfigError

MCNEMAR = ("exact", "midp")
KINDS = {"a": "vs. bicubic", "b": "vs. trained on LR", "c": "vs. trained on restored", "d": "vs. plain LR"}
HR_ARMS = ("hr", "zero-shot")  # models not trained on the degraded faces they are tested on


@dataclass(frozen=True)
class StatsConfig:
    """The hypothesis tests. ``mcnemar``: exact (two-sided binomial) | midp (mid-p variant, less conservative)."""

    alpha: float = 0.05
    bootstrap: int = 2000  # resamples of people for each interval
    seed: int = 0
    mcnemar: str = "exact"

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"config key 'stats.alpha' must be in (0, 1), got {self.alpha}")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 100:
            raise ConfigError(f"config key 'stats.bootstrap' must be an integer >= 100, got {self.bootstrap!r}")
        if self.mcnemar not in MCNEMAR:
            raise ConfigError(f"config key 'stats.mcnemar': unknown value {self.mcnemar!r}; "
                              f"choose from {', '.join(MCNEMAR)}")


def persons(dataset) -> dict[str, str | None]:
    """persons.json: image key -> person id (None where the dataset has no identities)."""
    return {s.key: s.person for s in dataset.samples}


def mcnemar_p(b: int, c: int, midp: bool = False) -> float:
    """Two-sided McNemar p from the discordant counts ``b`` (A right only) and ``c`` (B right only).

    Exact: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2); mid-p: that minus P(X = min(b, c)); both capped at 1.
    """
    from scipy.stats import binom

    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    p = 2.0 * float(binom.cdf(k, n, 0.5))
    if midp:
        p -= float(binom.pmf(k, n, 0.5))
    return min(1.0, p)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (step-down, monotone, capped at 1)."""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def bootstrap(right_a: np.ndarray, right_b: np.ndarray, clusters: list, draws: int, seed: int) -> dict:
    """95 % percentile intervals of accuracy A, accuracy B and A - B, resampling whole clusters (people).

    Args:
        right_a, right_b: (N,) bool, whether A and B classified pair i correctly.
        clusters: (N,) the person of each pair; a resample draws people with replacement and keeps all their pairs.
    Returns:
        {"acc_a": (lo, hi), "acc_b": (lo, hi), "diff": (lo, hi)}.
    """
    ids, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    n = np.bincount(inverse, minlength=len(ids)).astype(float)
    a = np.bincount(inverse, right_a.astype(float), minlength=len(ids))
    b = np.bincount(inverse, right_b.astype(float), minlength=len(ids))
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(ids), np.full(len(ids), 1.0 / len(ids)), size=draws).astype(float)
    total = weights @ n
    out = {}
    for key, values in (("acc_a", weights @ a / total), ("acc_b", weights @ b / total),
                        ("diff", weights @ (a - b) / total)):
        lo, hi = np.percentile(values, [2.5, 97.5])
        out[key] = (float(lo), float(hi))
    return out


def verdict(p_holm: float, diff_ci: tuple[float, float], alpha: float) -> str:
    """supported | contradicted | inconclusive (see the module docstring)."""
    if p_holm < alpha and diff_ci[0] > 0:
        return "supported"
    if p_holm < alpha and diff_ci[1] < 0:
        return "contradicted"
    return "inconclusive"


# --------------------------------------------------------------------------------------------- the table
def plan(cells: list[dict]) -> list[dict]:
    """Every row of the table: its ids, claim, and the cells of A and B (``b`` None with ``missing`` saying why).

    A is always the HR-trained (or zero-shot) model tested on restored faces of one width and restorer.
    """
    index: dict[tuple, list[dict]] = {}
    for c in cells:
        arm = "hr" if c["arm"] in HR_ARMS else c["arm"]
        index.setdefault((c["model"], c.get("align"), arm, c["width"], c["restorer"]), []).append(c)
    heads = {(c["model"], c.get("align"), c["width"], c["restorer"], c["arm"]) for c in cells
             if c["arm"] in HR_ARMS and c["width"] is not None and c["restorer"] != "none"}
    rows = []
    for model, align, width, restorer, arm in heads:
        a = index[(model, align, "hr", width, restorer)]
        trained = "the zero-shot model" if arm == "zero-shot" else "the HR-trained model"
        others = {"d": ("hr", "none", f"{restorer} > plain LR ({trained})", "plain LR was not tested"),
                  "b": ("lr", "none", f"HR + {restorer} > trained on LR", _no_arm("lr", arm)),
                  "c": ("restored", restorer, f"HR + {restorer} > trained on {restorer}", _no_arm("restored", arm))}
        if restorer != "bicubic":
            others["a"] = ("hr", "bicubic", f"{restorer} > bicubic ({trained})", "`bicubic` was not tested")
        for kind, (b_arm, b_restorer, claim, missing) in others.items():
            b = index.get((model, align, b_arm, width, b_restorer))
            rows.append({"model": model, "align": align, "width": width, "restorer": restorer, "kind": kind,
                         "claim": claim, "a": a, "b": b, "missing": None if b else missing})
    return sorted(rows, key=lambda r: (r["model"], str(r["align"]), r["width"], r["kind"],
                                       r["restorer"] != "bicubic", r["restorer"]))


def _no_arm(arm: str, model_arm: str) -> str:
    if model_arm == "zero-shot":
        return f"zero-shot model: not trained here, so no `{arm}` arm"
    return f"the `{arm}` arm did not run (`phases.arms`)"


def _correct(cells: list[dict]) -> dict[tuple, bool]:
    """(fold, seed, image) -> classified correctly; seed is None for cells without one."""
    return {(c["fold"], c.get("seed"), k): label == pred for c in cells
            for k, label, pred in zip(c["keys"], c["labels"], c["preds"])}


def _seed(base: int, ident: str) -> int:
    """A per-row seed, so that adding a row does not change the intervals of the others."""
    return int.from_bytes(hashlib.sha256(f"{base}|{ident}".encode()).digest()[:8], "little")


def test_pair(row: dict, persons: dict, cfg: StatsConfig) -> dict:
    """Accuracies, McNemar p and person-bootstrap intervals of one planned row with both sides present."""
    right_a, right_b = _correct(row["a"]), _correct(row["b"])
    shared = sorted(set(right_a) & set(right_b), key=str)
    ra = np.array([right_a[k] for k in shared], bool)
    rb = np.array([right_b[k] for k in shared], bool)
    clusters = [persons.get(k[2]) or f"image {k[2]}" for k in shared]
    only_a, only_b = int((ra & ~rb).sum()), int((~ra & rb).sum())
    ident = f"{row['model']}|{row['align']}|{row['width']}|{row['restorer']}|{row['kind']}"
    ci = bootstrap(ra, rb, clusters, cfg.bootstrap, _seed(cfg.seed, ident)) if shared else {}
    out = {"n": len(shared), "persons": len(set(clusters)), "a_only": only_a, "b_only": only_b,
           "p": mcnemar_p(only_a, only_b, cfg.mcnemar == "midp")}
    for key, values in (("acc_a", ra), ("acc_b", rb), ("diff", ra.astype(float) - rb)):
        out[key] = float(values.mean()) if shared else float("nan")
        out[f"{key}_lo"], out[f"{key}_hi"] = ci.get(key, (float("nan"), float("nan")))
    return out


def hypothesis(cells: list[dict], persons: dict, cfg: StatsConfig) -> list[dict]:
    """The table's rows: tested rows with Holm-adjusted p over the family and a verdict; the others say why not."""
    rows = []
    for planned in plan(cells):
        row = {k: planned[k] for k in ("model", "align", "width", "restorer", "kind", "claim")}
        if planned["b"] is not None:
            row.update(test_pair(planned, persons, cfg))
            if row["n"] == 0:
                planned["missing"] = "no test image in common"
        row["status"] = "tested" if planned["missing"] is None else f"not tested: {planned['missing']}"
        rows.append(row)
    family = [r for r in rows if r["status"] == "tested"]
    for r, p in zip(family, holm([r["p"] for r in family])):
        r["p_holm"] = p
        r["verdict"] = verdict(p, (r["diff_lo"], r["diff_hi"]), cfg.alpha)
    for r in rows:
        r.setdefault("verdict", r["status"])
    return rows


COLUMNS = ("model", "align", "width", "kind", "restorer", "claim", "status", "n", "persons", "acc_a", "acc_a_lo",
           "acc_a_hi", "acc_b", "acc_b_lo", "acc_b_hi", "diff", "diff_lo", "diff_hi", "a_only", "b_only", "p",
           "p_holm", "verdict")


def _pct(value: float, lo: float, hi: float) -> str:
    return f"{100 * value:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def markdown(rows: list[dict]) -> str:
    """One line per row: accuracies and A - B with 95 % person intervals (percentage points), p, Holm p, verdict."""
    aligned = len({r["align"] for r in rows}) > 1  # the main run has one framing; a column only for several
    lines = [f"| model |{' align |' if aligned else ''} width | claim (A > B) | pairs (persons) | A % [95 % CI] | "
             "B % [95 % CI] | A − B pp [95 % CI] | A only / B only | p | p Holm | verdict |",
             "|---|" + ("---|" if aligned else "") + "---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        align = f" {r['align']} |" if aligned else ""
        head = f"| {r['model']} |{align} {r['width']} px | {r['claim']} |"
        if r["status"] != "tested":
            lines.append(head + " — | — | — | — | — | — | — | " + r["status"] + " |")
            continue
        lines.append(head + f" {r['n']} ({r['persons']}) | {_pct(r['acc_a'], r['acc_a_lo'], r['acc_a_hi'])} | "
                     f"{_pct(r['acc_b'], r['acc_b_lo'], r['acc_b_hi'])} | "
                     f"{_pct(r['diff'], r['diff_lo'], r['diff_hi'])} | {r['a_only']} / {r['b_only']} | "
                     f"{r['p']:.3g} | {r['p_holm']:.3g} | **{r['verdict']}** |")
    return "\n".join(lines)


def section(folder: Path, cells: list[dict], cfg: dict) -> str:
    """Write hypothesis.csv and return REPORT.md's section answering "does restoring beat training on LR?"."""
    config = StatsConfig(**cfg.get("stats", {}))
    path = Path(folder) / "persons.json"
    persons = json.loads(path.read_text()) if path.is_file() else {}
    rows = hypothesis(cells, persons, config)
    _write_csv(Path(folder) / "hypothesis.csv", rows)
    if not rows:
        return "## Does restoring beat training on LR?\n\n_No restorer was tested._\n"
    tested = [r for r in rows if r["status"] == "tested"]
    seed_rows = [r for r in tested if r["kind"] == "b"]
    counts = {v: sum(r["verdict"] == v for r in seed_rows) for v in ("supported", "contradicted", "inconclusive")}
    known = any(p is not None for p in persons.values())
    unit = "people (`persons.json`)" if known else "images (the dataset has no person ids)"
    answer = (f"Restoring (HR-trained model + restorer) beat training on LR in {counts['supported']} of "
              f"{len(seed_rows)} tested backbone x width x restorer rows, lost in {counts['contradicted']}, "
              f"inconclusive in {counts['inconclusive']}." if seed_rows else
              "The `lr` arm did not run, so the question itself was not tested (add `lr` to `phases.arms`).")
    return "\n".join([
        "## Does restoring beat training on LR?", "", answer, "",
        f"Each row claims A beats B on the same test images, paired on (fold, seed, image). "
        f"{'Exact' if config.mcnemar == 'exact' else 'Mid-p'} McNemar test on the discordant pairs; Holm-Bonferroni "
        f"over the family of all {len(tested)} tested rows of this table (every backbone, width, restorer and "
        f"comparison); 95 % percentile intervals from {config.bootstrap} bootstrap resamples of {unit}, seed "
        f"{config.seed}. Verdict: **supported** when Holm p < {config.alpha:g} and the interval of A − B lies above "
        f"0, **contradicted** (B beats A) when Holm p < {config.alpha:g} and it lies below 0, else "
        "**inconclusive** (no evidence either way). Rows that did not run "
        "say why and are not in the family. With several training seeds McNemar counts each (seed, image) pair; "
        "the person intervals carry the dependence. All rows: `hypothesis.csv`." + _few(tested, known), "",
        markdown(rows), ""])


def _few(tested: list[dict], known: bool) -> str:
    """A warning where the intervals rest on few people (a percentile bootstrap needs many)."""
    fewest = min((r["persons"] for r in tested), default=0)
    if not known or not tested or fewest >= 20:
        return ""
    return (f" **Only {fewest} people in the smallest row: the intervals are coarse (a bootstrap over so few "
            "people cannot show the spread of a population); more folds run, or more people, make them usable.**")


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = [c for c in COLUMNS if c != "align" or any(r["align"] is not None for r in rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue())
