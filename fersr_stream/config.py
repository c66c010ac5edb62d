"""Stream configuration: frozen dataclasses are the schema, YAML and ``--set a.b=v`` only supply values.

An unknown key is a :class:`ConfigError` that suggests the nearest known key; a value out of its range is one
too, raised when the dataclass is made (so before a run touches anything). Names that the stages own (detector,
enhancer, decoder, interpolation, policy) are checked by those stages' factories.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError, SinkError


def _require(ok: bool, key: str, rule: str, value) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class SourceConfig:
    """Where frames come from. ``uri``: one or more sources (``--source`` repeated), each a camera, a URL, a file,
    a folder, a glob or a ``.txt`` list of sources (see :mod:`fersr_stream.sources.many`). ``policy``: auto (files
    wait, live sources drop oldest), wait, drop_oldest, for every source. Network streams: ``open_timeout`` for
    each connection, ``read_timeout`` without video before the stream counts as lost, ``reconnect_for`` seconds of
    reconnecting after a loss before the source gives up (0: never reconnect)."""

    uri: tuple[str, ...] = ()
    policy: str = "auto"
    queue_size: int = 8
    open_timeout: float = 10.0
    read_timeout: float = 10.0
    reconnect_for: float = 60.0
    fps: float = 5.0  # frame rate given to image and folder sources
    decoder: str = "pyav"  # pyav | dali (files only; GPU decode, optional extra)

    def __post_init__(self):
        _require(self.policy in ("auto", "wait", "drop_oldest"), "source.policy", "auto, wait or drop_oldest",
                 self.policy)
        _require(self.queue_size >= 1, "source.queue_size", "at least 1 frame", self.queue_size)
        # time bases are made with denominators up to 1001 and must fit FFmpeg's 32-bit ones
        _require(0.001 <= self.fps <= 1000, "source.fps", "in [0.001, 1000] frames per second", self.fps)
        _require(self.open_timeout > 0, "source.open_timeout", "> 0 seconds", self.open_timeout)
        _require(self.read_timeout > 0, "source.read_timeout", "> 0 seconds", self.read_timeout)
        _require(self.reconnect_for >= 0, "source.reconnect_for", ">= 0 seconds (0: never reconnect)",
                 self.reconnect_for)


@dataclass(frozen=True)
class DetectConfig:
    """Face detector. ``name``: a name in :data:`fersr_stream.detect.DETECTORS` (mtcnn, haar, yunet, retinaface);
    ``weights``: registry name or path (yunet, retinaface), or path (mtcnn; None = its shipped weights)."""

    name: str = "mtcnn"
    weights: str | None = None
    detect_width: int = 480  # frames are downscaled to this width before detection, boxes mapped back
    scale_factor: float = 1.2  # Haar's pyramid step: 1.1 finds a little more, at more scales to search
    min_face: int = 16  # smallest face width in source pixels (faces narrower are neither searched nor kept)
    score_threshold: float | None = None  # None: the detector's own (scores are not comparable across detectors)
    # video: a search every this many frames (and at every new shot), in between follow the faces found; 4 finds a
    # face that enters within 3 frames; 1: every frame searched whole
    full_every: int = 4
    # video, MTCNN: a search looks only where the picture changed since the one before (and every 8th search, or
    # where most of the picture changed, the whole frame): a face that appears changes the pixels where it is
    changed_only: bool = True

    def __post_init__(self):
        _require(self.detect_width >= 1, "detect.detect_width", "at least 1 pixel", self.detect_width)
        _require(self.scale_factor > 1, "detect.scale_factor", "> 1 (the pyramid's step)", self.scale_factor)
        _require(self.min_face >= 0, "detect.min_face", ">= 0 pixels", self.min_face)
        _require(self.score_threshold is None or 0 <= self.score_threshold <= 1, "detect.score_threshold",
                 "in [0, 1] (or none: the detector's own)", self.score_threshold)
        _require(self.full_every >= 1, "detect.full_every", "at least 1 frame", self.full_every)


@dataclass(frozen=True)
class AlignConfig:
    """Face crops: FFHQ 5-point alignment when landmarks exist, else a square box crop with ``margin``.

    ``size`` is the side of the crops that a restorer, ``--simulate-lr`` or the paste-back read; where only the
    classifier reads them, they are cut smaller (see :func:`fersr_stream.pipeline.stages.crop_side`)."""

    size: int = 512
    margin: float = 0.25

    def __post_init__(self):
        _require(self.size >= 16, "align.size", "at least 16 pixels", self.size)
        _require(self.margin >= 0, "align.margin", ">= 0 (a fraction of the face box)", self.margin)


MIN_FACE_WIDTH = 2
"""The narrowest face a low resolution is simulated at, in px (--simulate-lr, degrade.width, the study's widths)."""


@dataclass(frozen=True)
class DegradeConfig:
    """Simulated low resolution: crops are made as if the face were ``width`` px wide (None = off)."""

    width: int | None = None
    blur: float = 0.0  # Gaussian sigma in low-resolution pixels, 0 = off
    noise: float = 0.0  # Gaussian noise std in 0..255 units, 0 = off
    jpeg: int | None = None  # JPEG quality, None = off
    interpolation: str = "bilinear"  # how the LR face is enlarged for viewing/classifying (the study's LR)
    seed: int = 0

    def __post_init__(self):
        _require(self.width is None or self.width >= MIN_FACE_WIDTH, "degrade.width",
                 f"at least {MIN_FACE_WIDTH} pixels (or none)", self.width)
        _require(self.jpeg is None or 1 <= self.jpeg <= 100, "degrade.jpeg", "a quality in 1..100 (or none)",
                 self.jpeg)
        _require(self.blur >= 0, "degrade.blur", ">= 0 (a Gaussian sigma in low-res pixels)", self.blur)
        _require(self.noise >= 0, "degrade.noise", ">= 0 (a std in 0..255 units)", self.noise)


@dataclass(frozen=True)
class EnhanceConfig:
    """Face restoration. ``name``: none | bicubic | gfpgan | codeformer | restoreformer."""

    name: str = "none"
    weights: str | None = None  # registry name or path; None = the enhancer's default entry
    fidelity: float = 0.5  # CodeFormer w in [0, 1]
    below: int | None = None  # restore only faces narrower than this many source pixels
    reuse_every: int = 0  # a track reuses its last restoration for up to this many frames
    reuse_iou: float = 0.7  # ...while its box overlaps the restored one at least this much
    batch: int = 8  # faces per forward on CUDA, frames per call everywhere (a CPU runs one face per forward)
    max_wait: float = 0.05  # seconds the batcher may wait to fill a batch, only while later stages are busy
    seed: int = 0
    compile: bool = False  # torch.compile the restoration network (CUDA; the first batches pay the compile)

    def __post_init__(self):
        _require(0 <= self.fidelity <= 1, "enhance.fidelity", "in [0, 1]", self.fidelity)
        _require(self.below is None or self.below >= 1, "enhance.below", "at least 1 pixel (or none)", self.below)
        _require(self.reuse_every >= 0, "enhance.reuse_every", ">= 0 frames", self.reuse_every)
        _require(0 <= self.reuse_iou <= 1, "enhance.reuse_iou", "in [0, 1]", self.reuse_iou)
        _require(self.batch >= 1, "enhance.batch", "at least 1", self.batch)
        _require(self.max_wait >= 0, "enhance.max_wait", ">= 0 seconds", self.max_wait)


@dataclass(frozen=True)
class ClassifyConfig:
    """Emotion classifier: ``weights`` None = the shipped FER2013 mini-Xception, else a fersr checkpoint path."""

    weights: str | None = None
    batch: int = 32  # faces per forward, and the most frames the stage takes at once
    # seconds the stage waits to gather frames: a forward of several faces costs less per face (PyTorch sends more
    # of its convolutions to oneDNN and the call's fixed cost is shared; python -m fersr_stream.bench.choices),
    # and fewer, larger hand-offs cost less on few cores. It waits only while a later stage has frames queued, so
    # it adds no latency where the stages after it sit idle.
    max_wait: float = 0.05

    def __post_init__(self):
        _require(self.batch >= 1, "classify.batch", "at least 1", self.batch)
        _require(self.max_wait >= 0, "classify.max_wait", ">= 0 seconds", self.max_wait)


@dataclass(frozen=True)
class TrackConfig:
    """IoU tracker, per-track exponential smoothing of emotions (``smooth`` = weight of the past, 0 = off), and a
    per-track causal filter of the landmarks (One Euro: ``landmarks_cutoff`` Hz for a still face, 0 = off, rising by
    ``landmarks_beta`` Hz per face width per second of motion)."""

    iou: float = 0.3
    max_age: int = 10
    smooth: float = 0.6
    landmarks_cutoff: float = 1.0
    landmarks_beta: float = 5.0

    def __post_init__(self):
        _require(0 <= self.iou <= 1, "track.iou", "in [0, 1]", self.iou)
        _require(self.max_age >= 0, "track.max_age", ">= 0 frames", self.max_age)
        _require(0 <= self.smooth < 1, "track.smooth", "in [0, 1) (the weight of the past; 0 = off)", self.smooth)
        _require(self.landmarks_cutoff >= 0, "track.landmarks_cutoff", ">= 0 Hz (0 = off)", self.landmarks_cutoff)
        _require(self.landmarks_beta >= 0, "track.landmarks_beta", ">= 0", self.landmarks_beta)


@dataclass(frozen=True)
class OverlayConfig:
    inset: bool = False  # draw the processed (degraded/restored) face beside its box
    paste: bool = False  # paste restored faces back into the frame (feathered)


@dataclass(frozen=True)
class OutputConfig:
    video: str | None = None
    jsonl: str | None = None
    show: bool = False
    crf: int = 23
    preset: str = "veryfast"
    codec: str = "auto"  # auto (h264_nvenc when available, else libx264) | libx264 | h264_nvenc
    threads: int = 0  # CPU encoder threads; 0 = one per core beyond the two the other stages keep busy (min 1)


@dataclass(frozen=True)
class StreamConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    device: str = "auto"
    max_frames: int | None = None  # per source
    metrics_port: int | None = None  # serve Prometheus metrics on 127.0.0.1 at this port while the run goes

    def __post_init__(self):
        _require(self.max_frames is None or self.max_frames >= 1, "max_frames", "at least 1 (or none: all)",
                 self.max_frames)
        _require(self.metrics_port is None or 1 <= self.metrics_port <= 65535, "metrics_port",
                 "a TCP port in 1..65535 (or none)", self.metrics_port)
        # the face is simulated smaller than its crop; a larger one would only be a costly enlargement
        _require(self.degrade.width is None or self.degrade.width <= self.align.size, "degrade.width",
                 f"at most the crop's side, align.size = {self.align.size} (--simulate-lr)", self.degrade.width)


def _coerce(value, hint, key: str):
    """Convert a YAML/CLI value to the annotated type (int, float, bool, str, Optional and tuples of those).

    A tuple key takes a YAML list, or a string of comma-separated items (``train.models=resnet18,vgg16``).
    """
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if value is None:
        raise ConfigError(f"config key {key!r} needs a value")
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(item, typing.get_args(hint)[0], key) for item in items)
    if isinstance(value, (list, tuple, dict)):  # str() would take them as they are printed
        raise ConfigError(f"config key {key!r}: expected {hint.__name__}, got {value!r}")
    try:
        if hint is float:
            number = float(value)
            if math.isinf(number):  # NaN fails every key's range check, with that key's rule in the message
                raise ValueError(value)
            return number
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if hint in (int, float) and isinstance(value, bool):  # int(True) is 1: a yes/no is not a number
            raise ValueError(value)
        return hint(value)
    except (TypeError, ValueError, OverflowError):
        what = "a finite number" if hint is float else hint.__name__
        raise ConfigError(f"config key {key!r}: expected {what}, got {value!r}") from None


def merge(config, values: dict, prefix: str = ""):
    """Return ``config`` (a dataclass instance) with nested ``values`` applied, checking every key."""
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, value in values.items():
        full = prefix + key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key {full!r}{hint}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                first = dataclasses.fields(current)[0].name
                raise ConfigError(f"config key {full!r} is a section; give its keys, e.g. {full}.{first}=...")
            changes[key] = merge(current, value, full + ".")
        else:
            changes[key] = _coerce(value, hints[key], full)
    return dataclasses.replace(config, **changes)


def parse_set(items: list[str]) -> dict:
    """Turn ``["a.b=1", "c=x"]`` into nested dicts; values are parsed as YAML scalars.

    Raises:
        ConfigError: an item without ``=``, or a value that is not YAML (``detect.name=[``).
    """
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as exc:
            reason = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc).splitlines()[0]
            quoted = "'" + raw.replace("'", "''") + "'"
            raise ConfigError(f"--set {item}: not valid YAML ({reason}); to give it as a string, quote it: "
                              f"--set \"{key}={quoted}\"") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {'.'.join(parts[:-1])} is given a value by another --set")
        node[parts[-1]] = value
    return out


INSTALLED = Path(__file__).resolve().parent / "configs"  # the stream configs shipped with the package


def installed(folder: Path = INSTALLED) -> dict[str, Path]:
    """The configs installed in ``folder`` by name (``default``, ``restore_lowres``; the study's have their own)."""
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def find(config: str | Path, folder: Path = INSTALLED, clone: str = "configs/stream") -> Path:
    """The config file ``--config`` means: an existing file as it is; else a config installed in ``folder`` given
    by name (``default``, ``default.yaml``) or by its place in a clone (``clone``/default.yaml).

    Raises:
        ConfigError: neither (the installed configs named), or a folder.
    """
    path = Path(config).expanduser()
    if path.is_file():
        return path
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    bare = path.parent == Path(".") or path.parent.as_posix().endswith(clone)
    shipped = installed(folder)
    if bare and name in shipped:
        return shipped[name]
    names = ", ".join(shipped)
    if path.is_dir():
        raise ConfigError(f"config file {config} is a folder; give a YAML file or an installed config's name: "
                          f"{names}")
    raise ConfigError(f"config file not found: {config}; installed configs (--config NAME): {names}")


def load(path: str | Path | None = None, overrides: list[str] | tuple = (), base=None):
    """Defaults, then the YAML file (a path, or an installed config's name: :func:`find`), then ``--set``
    overrides."""
    config = base if base is not None else StreamConfig()
    if path is not None:
        config = merge(config, read_yaml(find(path)))
    return merge(config, parse_set(list(overrides)))


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one without a word,
    though the YAML spec makes keys unique): a config edited in two places must not have one of them ignored."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path, what: str = "config file") -> dict:
    """The mapping the YAML file ``path`` holds (empty for an empty file).

    Raises:
        ConfigError: the file is not UTF-8 text, not valid YAML (the line and column of the problem said), or
            not a mapping; ``what`` names the file in the message.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        values = yaml.load(text, Loader=_UniqueKeys)  # a SafeLoader: no Python objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"{what} {path} is not valid YAML: {exc.problem} (line {mark.line + 1}, column "
                          f"{mark.column + 1})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of sections")
    return values


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def save(config, path: str | Path) -> None:
    """Write the resolved config as YAML (beside the outputs, so a run can be repeated), whole or not at all.

    It is written to a temporary file beside ``path``, synced, then renamed over it: a full disk or a kill leaves
    an earlier file as it was.

    Raises:
        SinkError: where the file cannot be written (a one-line message, exit 2 from the CLI).
    """
    path = Path(path)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        # os.open rather than tempfile: its files are private (0600), this one is made like any other (umask)
        with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), "w", encoding="utf-8") as file:
            file.write(yaml.safe_dump(to_dict(config), sort_keys=False))
            file.flush()
            os.fsync(file.fileno())
        os.replace(part, path)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise SinkError(f"cannot write the resolved config: {path} ({exc.strerror or exc})") from None
