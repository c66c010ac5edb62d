"""Splits that keep the test fold out of every choice.

``subject`` (default): k-fold by person, so nobody in a test fold was seen in training; KDEF people are dealt
to folds by gender so each fold holds both. ``image``: the earlier work's protocol, k-fold over images
stratified by emotion (the same person then appears in training and test). ``official``: the dataset's own
split as one fold (FER2013's PublicTest validates; RAF-DB and AffectNet have none, so a validation part is
carved from their training part, by person where persons are known). Either way a validation subset of the
training part (people, or images) picks the epoch; the test fold is only ever evaluated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import ProtocolConfig
from .dataset import PARTS, Dataset, DatasetError, Sample


@dataclass(frozen=True)
class Fold:
    """One fold's sample keys; ``test_people``/``val_people`` are empty for the image protocol."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    test_people: tuple[str, ...] = ()
    val_people: tuple[str, ...] = ()


def make(dataset: Dataset, protocol: ProtocolConfig) -> list[Fold]:
    """Deterministic folds for ``dataset`` (a function of its sample keys, people, parts and ``protocol.seed``).

    Raises:
        DatasetError: a protocol the dataset cannot support (see :attr:`Dataset.protocols`), or too few images or
            people for it.
    """
    if protocol.split not in dataset.protocols:
        raise DatasetError(_unsupported(dataset, protocol.split))
    if protocol.split == "subject":
        return _by_subject(dataset, protocol)
    if protocol.split == "official":
        return [_official(dataset, protocol)]
    return _by_image(dataset, protocol)


def _unsupported(dataset: Dataset, split: str) -> str:
    """One line on why ``dataset`` cannot be split by ``split``, and what to use instead."""
    others = " or ".join(p for p in dataset.protocols if p != split)
    if split == "official":
        return f"{dataset.kind} has no official split; use protocol.split={others}"
    hint = "set data.person_regex, or " if dataset.kind == "folders" else ""
    return (f"the subject-independent split needs a person for every image, which {dataset.kind} does not give; "
            f"{hint}use protocol.split={others}")


def _deal(items: list, groups: dict, k: int, rng: np.random.Generator) -> list[list]:
    """Shuffle ``items`` within each group and deal them round-robin into ``k`` bins (balanced per group)."""
    bins: list[list] = [[] for _ in range(k)]
    turn = 0
    for group in sorted(set(groups.values())):
        members = sorted(i for i in items if groups[i] == group)
        for i in rng.permutation(len(members)):
            bins[turn % k].append(members[i])
            turn += 1
    return bins


def _by_subject(dataset: Dataset, protocol: ProtocolConfig) -> list[Fold]:
    people = sorted({s.person for s in dataset.samples})
    if len(people) < protocol.folds + 1:
        raise DatasetError(f"{len(people)} people cannot make {protocol.folds} subject folds plus a validation "
                           f"set; lower protocol.folds")
    # KDEF ids start with the gender letter; dealing per gender keeps each fold mixed.
    gender = {p: p[0] if dataset.kind == "kdef" else "" for p in people}
    rng = np.random.default_rng(protocol.seed)
    test_bins = _deal(people, gender, protocol.folds, rng)
    if len(people) - max(len(b) for b in test_bins) < 2:  # every fold needs a training and a validation person
        raise DatasetError(f"{len(people)} people cannot make {protocol.folds} subject folds that each keep a "
                           "training and a validation person; lower protocol.folds")
    keys_of: dict[str, list[str]] = {}
    for s in dataset.samples:
        keys_of.setdefault(s.person, []).append(s.key)
    folds = []
    for k, test_people in enumerate(test_bins):
        rest = [p for p in people if p not in set(test_people)]
        val_people = _pick_people(rest, protocol.val_fraction, np.random.default_rng([protocol.seed, k]))
        train_people = [p for p in rest if p not in set(val_people)]
        gather = lambda group: tuple(sorted(key for p in group for key in keys_of[p]))  # noqa: E731
        folds.append(Fold(k, gather(train_people), gather(val_people), gather(test_people),
                          tuple(sorted(test_people)), tuple(val_people)))
    return folds


def _by_image(dataset: Dataset, protocol: ProtocolConfig) -> list[Fold]:
    keys = [s.key for s in dataset.samples]
    label = {s.key: int(s.label) for s in dataset.samples}
    if len(keys) < 2 * protocol.folds * 7:
        raise DatasetError(f"{len(keys)} images are too few for {protocol.folds} image folds; lower protocol.folds")
    rng = np.random.default_rng(protocol.seed)
    bins = _deal(keys, label, protocol.folds, rng)
    folds = []
    for k, test in enumerate(bins):
        test_set = set(test)
        rest = [key for key in keys if key not in test_set]
        val = _pick_images(rest, label, protocol.val_fraction, np.random.default_rng([protocol.seed, k]))
        val_set = set(val)
        folds.append(Fold(k, tuple(sorted(key for key in rest if key not in val_set)), tuple(sorted(val)),
                          tuple(sorted(test))))
    return folds


def _official(dataset: Dataset, protocol: ProtocolConfig) -> Fold:
    """The dataset's own parts; a validation part carved from the training part where it has none."""
    part = {p: [s for s in dataset.samples if s.part == p] for p in PARTS}
    for needed in ("train", "test"):
        if not part[needed]:
            raise DatasetError(f"the official split of {dataset.kind} in {dataset.root} has no {needed} images")
    train, val = part["train"], part["val"]
    if not val:
        rng = np.random.default_rng(protocol.seed)
        if "subject" in dataset.protocols and len(_people(train)) >= 2:
            chosen = set(_pick_people(list(_people(train)), protocol.val_fraction, rng))
            val = [s for s in train if s.person in chosen]
        else:
            label = {s.key: int(s.label) for s in train}
            chosen = set(_pick_images([s.key for s in train], label, protocol.val_fraction, rng))
            val = [s for s in train if s.key in chosen]
        held = {s.key for s in val}
        train = [s for s in train if s.key not in held]
    return Fold(0, _keys(train), _keys(val), _keys(part["test"]), _people(part["test"]), _people(val))


def _keys(samples: list[Sample]) -> tuple[str, ...]:
    return tuple(sorted(s.key for s in samples))


def _people(samples: list[Sample]) -> tuple[str, ...]:
    return tuple(sorted({s.person for s in samples if s.person is not None}))


def _pick_people(people: list[str], fraction: float, rng: np.random.Generator) -> list[str]:
    """A sorted ``fraction`` of ``people`` (at least one, and never all of them) for validation."""
    n_val = min(max(1, round(fraction * len(people))), len(people) - 1)
    return sorted(people[i] for i in rng.choice(len(people), n_val, replace=False))


def _pick_images(keys: list[str], label: dict[str, int], fraction: float, rng: np.random.Generator) -> list[str]:
    """A ``fraction`` of each emotion's ``keys`` (at least one per emotion) for validation."""
    val = []
    for c in sorted({label[key] for key in keys}):
        members = [key for key in keys if label[key] == c]
        n_val = max(1, round(fraction * len(members)))
        val += [members[i] for i in rng.choice(len(members), n_val, replace=False)]
    return val


def to_json(folds: list[Fold], protocol: ProtocolConfig) -> dict:
    return {"split": protocol.split, "seed": protocol.seed, "folds": [asdict(f) for f in folds]}


def save(folds: list[Fold], protocol: ProtocolConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(folds, protocol), indent=1))


def load(path: str | Path) -> list[Fold]:
    blob = json.loads(Path(path).read_text())
    return [Fold(**{k: tuple(v) if isinstance(v, list) else v for k, v in f.items()}) for f in blob["folds"]]
