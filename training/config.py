"""Study configuration: frozen dataclasses are the schema; YAML and ``--set a.b=v`` only supply values.

The merge/load/save machinery is :mod:`fersr_stream.config`'s; only the schema lives here. Each section checks
its own values in ``__post_init__`` so that a typo or an impossible value is one :class:`ConfigError` line before
anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from fersr_stream import config as stream_config
from fersr_stream import degrade
from fersr_stream.classify.checkpoint import ARCHITECTURES
from fersr_stream.config import DegradeConfig
from fersr_stream.detect import DETECTORS
from fersr_stream.enhance import ENHANCERS
from fersr_stream.errors import ConfigError
from fersr_stream.weights.registry import ALIGNS, REGISTRY

from . import folders, layouts
from .quality import QualityConfig
from .stats import StatsConfig

ANGLES = ("FL", "HL", "S", "HR", "FR")
SESSIONS = ("A", "B")
# classifier networks with ImageNet weights are fine-tuned; the others (the shipped mini-Xception) run zero-shot
TRAINABLE = tuple(name for name in ARCHITECTURES.names() if f"{name}.imagenet" in REGISTRY)
ZERO_SHOT = tuple(name for name in ARCHITECTURES.names() if name not in TRAINABLE)
ARMS = ("hr", "lr", "restored")
CROPS = ("auto", "detect", "box", "none")
SPLITS = ("subject", "image", "official")
RESTORERS = tuple(name for name in ENHANCERS.names() if name != "none")
MAX_INPUT = 1024  # px: the networks' input side (ImageNet models take 224)
MIN_INPUT = 32  # px: ResNet's and VGG's five halvings leave one pixel of it


def _widths(key: str, values: tuple) -> None:
    """Face widths in px: integers >= :data:`fersr_stream.config.MIN_FACE_WIDTH`, each once."""
    _members(key, values, (), int)
    if any(w < stream_config.MIN_FACE_WIDTH for w in values):
        raise ConfigError(f"config key {key!r}: widths must be >= {stream_config.MIN_FACE_WIDTH} px")
    if len(set(values)) < len(values):
        raise ConfigError(f"config key {key!r} names a width twice: {list(values)}")


def _members(key: str, values: tuple, allowed: tuple, kind: type = str) -> tuple:
    """Check that every element of ``values`` has type ``kind`` and, when ``allowed`` is given, is one of it."""
    for v in values:
        if not isinstance(v, kind) or isinstance(v, bool):
            raise ConfigError(f"config key {key!r}: expected a list of {kind.__name__}, got {list(values)!r}")
        if allowed and v not in allowed:
            raise ConfigError(f"config key {key!r}: unknown value {v!r}; choose from {', '.join(allowed)}")
    return tuple(values)


@dataclass(frozen=True)
class DataConfig:
    """The dataset. ``kind``: one of :data:`training.layouts.KINDS` (kdef, folders, fer2013, rafdb, ckplus, jaffe,
    affectnet) or synthetic (a KDEF-shaped set generated into ``root``)."""

    kind: str = "kdef"
    root: str = ""
    angles: tuple[str, ...] = ANGLES
    sessions: tuple[str, ...] = SESSIONS
    person_regex: str | None = None  # folders: a regex whose first group names the person in a file name
    # folders: class folder name -> emotion or drop, e.g. [contempt=drop, joy=happy]; any other folder whose name
    # is not an emotion stops the load
    classes: tuple[str, ...] = ()
    synth_people: int = 4  # synthetic: identities (half female, half male)
    synth_width: int = 140  # synthetic: image width in px (KDEF's 562 x 762 aspect is kept)
    synth_seed: int = 0

    def __post_init__(self) -> None:
        kinds = (*layouts.KINDS, "synthetic")
        if self.kind not in kinds:
            raise ConfigError(f"config key 'data.kind': unknown value {self.kind!r}; choose from {', '.join(kinds)}")
        for key in ("person_regex", "classes"):
            if getattr(self, key) and self.kind != "folders":
                raise ConfigError(f"config key 'data.{key}' applies to data.kind=folders only (this is {self.kind})")
        folders.parse_classes(self.classes)
        _members("data.angles", self.angles, ANGLES)
        _members("data.sessions", self.sessions, SESSIONS)
        if not self.angles or not self.sessions:
            raise ConfigError("config keys 'data.angles' and 'data.sessions' must not be empty")
        if self.synth_people < 2 or self.synth_width < 48:
            raise ConfigError("config key 'data.synth_people' must be >= 2 and 'data.synth_width' >= 48")


@dataclass(frozen=True)
class FacesConfig:
    """Face crops. ``crop``: auto (the dataset's own way) | detect (the stream's detector) | box (KDEF's fixed
    box) | none (the image is the face); see :mod:`training.faces`. ``align``: landmarks (each detected face
    aligned to the FFHQ 5-point template from its landmarks, as the stream does) | box (a square around the
    detector's box with ``margin``); a face without landmarks gets the box crop either way."""

    crop: str = "auto"
    detector: str = "mtcnn"  # a detector with landmarks, so that faces.align=landmarks can align
    align: str = "landmarks"
    size: int = 224  # crop side in px; the HR input of every phase
    margin: float = 0.25  # border around a detected face or KDEF's box, as a fraction of its side

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ConfigError(f"config key 'faces.crop': unknown value {self.crop!r}; choose from {', '.join(CROPS)}")
        if self.size < 16:
            raise ConfigError(f"config key 'faces.size' must be >= 16, got {self.size}")
        if self.margin < 0:
            raise ConfigError(f"config key 'faces.margin' must be >= 0 (a fraction of the face box), got {self.margin}")
        if self.align not in ALIGNS:
            raise ConfigError(f"config key 'faces.align': unknown value {self.align!r}; "
                              f"choose from {', '.join(ALIGNS)}")
        if self.detector not in DETECTORS:
            raise ConfigError(f"config key 'faces.detector': unknown value {self.detector!r}; "
                              f"choose from {', '.join(DETECTORS.names())}")


@dataclass(frozen=True)
class ProtocolConfig:
    """How images are split. ``split``: subject (k-fold by person) | image (k-fold by image, as earlier work) |
    official (the dataset's own train/validation/test split: one fold)."""

    split: str = "subject"
    folds: int = 5
    val_fraction: float = 0.15  # share of the training people (or images) held out for model selection
    seed: int = 0  # deals the folds (the same folds for every training seed)
    only_folds: tuple[int, ...] | None = None  # run a subset of the folds (all when None)
    # training seeds (initialisation, data order, augmentation, dropout): every cell runs once per seed
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"config key 'protocol.split': unknown value {self.split!r}; "
                              f"choose from {', '.join(SPLITS)}")
        if self.folds < 2:
            raise ConfigError(f"config key 'protocol.folds' must be >= 2, got {self.folds}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigError(f"config key 'protocol.val_fraction' must be in (0, 0.5), got {self.val_fraction}")
        _members("protocol.seeds", self.seeds, (), int)
        if not self.seeds or len(set(self.seeds)) < len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"config key 'protocol.seeds' must list distinct seeds >= 0, got {list(self.seeds)}")
        if self.only_folds is not None:
            _members("protocol.only_folds", self.only_folds, (), int)
            if not self.only_folds:
                raise ConfigError("config key 'protocol.only_folds' must name a fold (leave it unset for all folds)")
            bad = [k for k in self.only_folds if not 0 <= k < (1 if self.split == "official" else self.folds)]
            if bad and self.split == "official":
                raise ConfigError(f"config key 'protocol.only_folds': the official split is one fold (0), "
                                  f"not {bad[0]}")
            if bad:
                raise ConfigError(f"config key 'protocol.only_folds': fold {bad[0]} outside 0..{self.folds - 1}")


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning. ``schedule``: full (all layers from the start) | pipeline (head first, then blocks top-down)."""

    models: tuple[str, ...] = TRAINABLE + ZERO_SHOT
    pretrained: bool = True  # ImageNet weights through the registry
    schedule: str = "full"
    input_size: int = 224
    epochs: int = 30
    batch: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3  # the new 7-way head learns faster than the pretrained body
    weight_decay: float = 1e-4
    patience: int = 6  # early stopping on validation accuracy; 0 = off
    head_epochs: int = 2  # pipeline: epochs with only the head trainable
    unfreeze_every: int = 2  # pipeline: epochs between unfreezing the next block
    augment: bool = True
    workers: int = 2
    threads: int | None = None  # torch CPU threads (None = torch's default; 1 helps on busy shared machines)

    def __post_init__(self) -> None:
        _members("train.models", self.models, TRAINABLE + ZERO_SHOT)
        if not self.models:
            raise ConfigError("config key 'train.models' must name at least one model")
        if self.schedule not in ("full", "pipeline"):
            raise ConfigError(f"config key 'train.schedule': unknown value {self.schedule!r}; choose full or pipeline")
        for key in ("input_size", "epochs", "batch", "unfreeze_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key 'train.{key}' must be >= 1")
        for key in ("workers", "patience", "head_epochs", "weight_decay"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key 'train.{key}' must be >= 0")
        for key in ("lr", "head_lr"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"config key 'train.{key}' must be > 0")
        if not MIN_INPUT <= self.input_size <= MAX_INPUT:
            raise ConfigError(f"config key 'train.input_size' must be {MIN_INPUT} to {MAX_INPUT} px, "
                              f"got {self.input_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("config key 'train.threads' must be >= 1 (or empty: torch's default)")


@dataclass(frozen=True)
class PhasesConfig:
    """The grid: test widths (face px), restorers (``name[@fidelity][:weights]``) and training arms.

    Arms: hr (phases 1-3: train on HR, test on HR, LR and restored), lr (train and test on LR),
    restored (train and test on restored faces).
    """

    widths: tuple[int, ...] = (8, 16, 24, 32, 48, 64)
    restorers: tuple[str, ...] = ("bicubic", "gfpgan", "codeformer@0.5")
    arms: tuple[str, ...] = ("hr",)
    # blur/noise/jpeg, and how plain LR faces are enlarged for the classifier; the width is set per cell.
    # Bilinear (torchvision Resize's default), so that LR and the bicubic restorer are different conditions.
    degrade: DegradeConfig = field(default_factory=DegradeConfig)

    def __post_init__(self) -> None:
        _widths("phases.widths", self.widths)
        _members("phases.arms", self.arms, ARMS)
        if not self.arms:
            raise ConfigError("config key 'phases.arms' must name at least one arm")
        _members("phases.restorers", self.restorers, ())
        seen: dict[str, str] = {}
        for spec in self.restorers:
            tag = parse_restorer(spec).tag  # one tag per restorer, parameters and weights file (by content)
            if tag in seen:
                same = "names one restorer twice" if seen[tag] == spec else "names the same weights twice"
                raise ConfigError(f"config key 'phases.restorers' {same}: {seen[tag]!r} and {spec!r} are both "
                                  f"{tag}; keep one")
            seen[tag] = spec
        if self.degrade.width is not None:
            raise ConfigError("config key 'phases.degrade.width' must stay empty: 'phases.widths' sets it per cell")
        try:  # a bad interpolation or JPEG quality fails here, before any work
            degrade.validate(self.degrade)
        except ConfigError as exc:
            raise ConfigError(f"phases.{exc}") from None  # its message starts with the key 'degrade.<field>'


@dataclass(frozen=True)
class CacheConfig:
    """Where face crops and restored faces are cached (shared between experiments; empty = ``<out>/cache``)."""

    dir: str = ""
    batch: int = 4  # faces per restorer call

    def __post_init__(self):
        if self.batch < 1:
            raise ConfigError(f"config key 'cache.batch' must be >= 1 (faces per restorer call), got {self.batch}")


@dataclass(frozen=True)
class ReportConfig:
    example_widths: tuple[int, ...] = (16,)  # face widths shown in the example grids

    def __post_init__(self) -> None:
        _widths("report.example_widths", self.example_widths)


@dataclass(frozen=True)
class AblationConfig:
    """The alignment ablation: the ``hr`` arm of ``models`` trained and tested again on faces framed by each
    alignment in ``align`` (other than ``faces.align``; empty = no ablation), tested on HR and at ``widths`` with
    every restorer; the report sets it against the main run in percentage points. ``models`` and ``widths`` are
    some of ``train.models`` and ``phases.widths``; empty = the first model, every width."""

    align: tuple[str, ...] = ("box",)
    models: tuple[str, ...] = ()
    widths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _members("ablation.align", self.align, ALIGNS)
        _members("ablation.models", self.models, TRAINABLE + ZERO_SHOT)
        _members("ablation.widths", self.widths, (), int)


@dataclass(frozen=True)
class StudyConfig:
    """One experiment: results go to ``<out>/<name>/``."""

    name: str = "kdef_three_phase"
    out: str = "runs"
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    phases: PhasesConfig = field(default_factory=PhasesConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    def __post_init__(self) -> None:
        self._check_ablation()
        shown = self.report.example_widths
        for key, widths in (("phases.widths", self.phases.widths), ("report.example_widths", shown)):
            too_wide = [w for w in widths if w >= self.faces.size]
            if too_wide:
                raise ConfigError(f"config key {key!r}: {too_wide[0]} px is not lower than the face crops "
                                  f"(faces.size = {self.faces.size} px)")
        if not self.name.strip() or not self.out.strip():
            raise ConfigError("config keys 'name' and 'out' must not be empty")
        if self.name in (".", "..") or "/" in self.name or "\\" in self.name:
            raise ConfigError(f"config key 'name' names the experiment's folder inside 'out' ({self.out}): a plain "
                              f"folder name, got {self.name!r} (set 'out' to write elsewhere)")

    def _check_ablation(self) -> None:
        """The ablation's cells are compared with the main run's: its models and widths must be run there too."""
        a = self.ablation
        if not a.align:
            return
        for key, values, where, run in (("models", a.models, "train.models", self.train.models),
                                        ("widths", a.widths, "phases.widths", self.phases.widths)):
            missing = [v for v in values if v not in run]
            if missing:
                raise ConfigError(f"config key 'ablation.{key}': {missing[0]} is not in {where!r}, so there is "
                                  f"nothing to compare it with; name a subset of {list(run)}, or set "
                                  "'ablation.align=[]' for no ablation")

    @property
    def ablation_models(self) -> tuple[str, ...]:
        """The models the ablation trains again (``ablation.models``, else the first of ``train.models``)."""
        return self.ablation.models or self.train.models[:1]

    @property
    def ablation_widths(self) -> tuple[int, ...]:
        """The widths the ablation tests at (``ablation.widths``, else every one of ``phases.widths``)."""
        return self.ablation.widths or self.phases.widths

    @property
    def folder(self) -> Path:
        return Path(self.out) / self.name

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache.dir) if self.cache.dir else Path(self.out) / "cache"


@dataclass(frozen=True)
class RestorerSpec:
    """A parsed ``name[@fidelity][:weights]`` restorer entry."""

    name: str
    fidelity: float = 0.5
    weights: str | None = None

    @property
    def tag(self) -> str:
        """A file-name-safe label, e.g. ``codeformer@0.7``; weights other than the restorer's default add a short
        hash of their content, so results and cached faces never outlive a weights file replaced in place. One
        weights file has one tag: ``gfpgan``, ``gfpgan:gfpgan.v1_4`` and a copy of that file are all ``gfpgan``."""
        tag = self.name if self.name != "codeformer" else f"{self.name}@{self.fidelity:g}"
        if self.weights:
            sha = weights_id(self.weights)
            default = ENHANCERS.get(self.name).default_weights
            if default is None or sha != weights_id(default):
                tag += "-" + sha[:6]
        return tag


def weights_id(weights: str) -> str:
    """The sha256 that identifies restorer weights: a registry entry's, else the file's own (hashed once per size
    and modification time); the path's while there is no file (a run stops on that before it uses any tag)."""
    from fersr_stream.weights import registry

    if weights in registry.REGISTRY:
        return registry.get(weights).sha256
    path = Path(weights).expanduser()
    if path.is_file():
        stat = path.stat()
        return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return hashlib.sha256(weights.encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    from fersr_stream.weights import store

    return store.sha256_file(path)


def parse_restorer(spec: str) -> RestorerSpec:
    """Parse ``codeformer@0.7``, ``gfpgan:gfpgan.v1_4`` or ``bicubic``; a bad entry is a ConfigError."""
    head, _, weights = spec.partition(":")
    name, at, fid = head.partition("@")
    if name not in RESTORERS:
        raise ConfigError(f"config key 'phases.restorers': unknown restorer {name!r}; "
                          f"choose from {', '.join(RESTORERS)}")
    fidelity = 0.5
    if at and name != "codeformer":
        raise ConfigError(f"config key 'phases.restorers': {spec!r}: only codeformer takes a fidelity (@w)")
    if at:
        try:
            fidelity = float(fid)
        except ValueError:
            raise ConfigError(f"config key 'phases.restorers': bad fidelity in {spec!r}") from None
        if not 0.0 <= fidelity <= 1.0:
            raise ConfigError(f"config key 'phases.restorers': fidelity in {spec!r} must be in [0, 1]")
    return RestorerSpec(name, fidelity, weights or None)


INSTALLED = Path(__file__).resolve().parent / "configs"  # the study configs shipped with the package


def installed() -> dict[str, Path]:
    """The installed study configs by name (``smoke``, ``kdef_three_phase``, ...)."""
    return stream_config.installed(INSTALLED)


def find(config: str | Path) -> Path:
    """The study config ``--config`` means: a file, an installed config's name, or its old place in a clone
    (``configs/train/smoke.yaml``); see :func:`fersr_stream.config.find`."""
    return stream_config.find(config, INSTALLED, "configs/train")


# Keys that moved: an old config stops with one line saying where, instead of "unknown key".
MOVED = {"train.seed": "protocol.seeds (a list: every cell runs once per training seed, e.g. protocol.seeds: [0])"}


def load(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> StudyConfig:
    """Defaults, then the YAML file (a path, or an installed config's name: :func:`find`), then ``--set``
    overrides (fersr_stream's loader, our schema)."""
    try:
        return stream_config.load(None if path is None else find(path), overrides, base=StudyConfig())
    except ConfigError as exc:
        for old, new in MOVED.items():
            if str(exc).startswith(f"unknown config key {old!r}"):
                raise ConfigError(f"config key {old!r} moved to {new}") from None
        if path is not None and _stream_sections(str(exc)):
            raise ConfigError(f"{exc} ({path} looks like a fersr-stream config: fersr-train takes a study config, "
                              f"e.g. --config smoke; `fersr-train init` writes the installed ones out)") from None
        raise


def _stream_sections(message: str) -> bool:
    """Whether ``message`` refuses a top-level key that only fersr-stream's config has (``detect``, ``track``...)."""
    study = {f.name for f in dataclasses.fields(StudyConfig)}
    stream = {f.name for f in dataclasses.fields(stream_config.StreamConfig)} - study
    return any(message.startswith(f"unknown config key {key!r}") for key in stream)


def save(config: StudyConfig, path: str | Path) -> None:
    stream_config.save(config, path)


def fingerprinted(config: StudyConfig, world_size: int = 1) -> dict:
    """What decides what a cell's model and numbers mean: data, faces, protocol, training, degradation, and the
    number of processes that train (``torchrun``'s world size: it splits each batch and each rank keeps its own
    BatchNorm statistics, so one process and four do not give the same model).

    A rerun into an existing experiment folder must match it. Widths, restorers, arms, models, the folds and
    seeds run, cache and report may change freely because every cell is keyed by its own conditions; the
    degradation recipe (blur, noise, JPEG, LR interpolation) is not in a cell's name, so it is part of it.
    """
    keep = {k: dataclasses.asdict(getattr(config, k)) for k in ("data", "faces", "protocol")}
    keep["degrade"] = dataclasses.asdict(config.phases.degrade)
    train = dataclasses.asdict(config.train)
    for operational in ("models", "workers", "threads"):
        train.pop(operational)
    keep["train"] = train
    keep["world_size"] = world_size
    keep["data"].pop("root")  # the same dataset may be mounted elsewhere on another machine
    keep["protocol"].pop("only_folds")  # which folds run, not what a fold is: a pilot fold can grow to the study
    keep["protocol"].pop("seeds")  # each cell is keyed by its seed: more seeds add cells
    return json.loads(json.dumps(keep, default=list))


def fingerprint(config: StudyConfig, world_size: int = 1) -> str:
    """A short hash of :func:`fingerprinted`."""
    blob = fingerprinted(config, world_size)
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def differences(earlier: dict, now: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two :func:`fingerprinted` dicts."""
    out = []
    for key in sorted(set(earlier) | set(now)):
        a, b = earlier.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(prefix + key)
    return out
