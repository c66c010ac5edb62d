"""The fersr classifier checkpoint: weights plus everything needed to use them.

Format ``fersr-classifier/1`` is a ``.safetensors`` file whose tensors are the model's state dict and whose
metadata (str -> str) holds:

- ``format``: ``"fersr-classifier/1"``;
- ``arch``: a name in :data:`ARCHITECTURES` (mini_xception, resnet18, resnet50, vgg16, vgg19);
- ``labels``: JSON list of :class:`~fersr_stream.classify.labels.Emotion` labels in the network's output order,
  e.g. ``["angry", "disgusted", ...]``; each of the seven emotions exactly once;
- ``preprocessing``: JSON object of :class:`~fersr_stream.weights.registry.Preprocessing` fields
  (``size``, ``value_range``, ``colour``, ``mean``, ``std``, ``crop``, and the framing of the face crops
  ``align`` and ``margin``, absent or null in checkpoints that do not record it);
- anything else free-form, e.g. ``source`` and ``sha256`` of the file the weights came from.

A ``.pt``/``.pth`` file holding a dict with the same keys plus ``state_dict`` is accepted too (``labels`` and
``preprocessing`` may there be plain lists/dicts); it is read with ``torch.load(weights_only=True)``.
The network outputs logits; :class:`fersr_stream.classify.Classifier` applies the softmax and the reordering.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path

import torch
from torch import nn

from ..errors import SinkError, WeightsError, unreadable
from ..registry import Registry
from ..weights.registry import Preprocessing
from .labels import Emotion

FORMAT = "fersr-classifier/1"
# classifier networks by name: each entry builds a randomly initialised network, ``(num_classes) -> nn.Module``
ARCHITECTURES = Registry("classifier architecture", {
    "mini_xception": "fersr_stream.classify.mini_xception:MiniXception",
    "resnet18": "fersr_stream.classify.torchvision_cnn:resnet18",
    "resnet50": "fersr_stream.classify.torchvision_cnn:resnet50",
    "vgg16": "fersr_stream.classify.torchvision_cnn:vgg16",
    "vgg19": "fersr_stream.classify.torchvision_cnn:vgg19",
})
_RESERVED = ("format", "arch", "labels", "preprocessing")
_TORCH_SUFFIXES = (".pt", ".pth")


def build(arch: str, num_classes: int = 7) -> nn.Module:
    """A randomly initialised classifier network of ``arch`` with ``num_classes`` outputs."""
    return ARCHITECTURES.get(arch)(num_classes)


def _check_labels(labels) -> tuple[Emotion, ...]:
    """Emotions from labels/codes/Emotion members; ValueError unless each of the seven appears once."""
    emotions = tuple(e if isinstance(e, Emotion) else Emotion.parse(str(e)) for e in labels)
    if sorted(emotions) != list(Emotion):
        raise ValueError(f"labels must name each of the 7 emotions once, got {[e.label for e in emotions]}")
    return emotions


def _preprocessing_json(p: Preprocessing) -> str:
    fields = dataclasses.asdict(p)
    fields.pop("labels")  # the checkpoint's own ``labels`` entry is authoritative
    return json.dumps(fields)


def save_checkpoint(path: str | Path, model: nn.Module, arch: str, labels, preprocessing: Preprocessing,
                    **meta) -> Path:
    """Write ``model``'s weights and metadata atomically (temp file + rename) and return the path.

    Args:
        path: ``.safetensors`` (preferred), ``.pt`` or ``.pth``.
        model: the network; its state dict is saved (copied to CPU) as the tensors.
        arch: a name in :data:`ARCHITECTURES`.
        labels: the emotion of each output column (Emotion members or their labels/codes).
        preprocessing: what the network expects of its input.
        **meta: free-form extra metadata, stored as strings (e.g. source, sha256, licence).
    """
    path = Path(path)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHITECTURES.names())}")
    clash = sorted(set(meta) & set(_RESERVED))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved")
    suffix = path.suffix.lower()
    if suffix != ".safetensors" and suffix not in _TORCH_SUFFIXES:
        raise SinkError(f"cannot write classifier checkpoint {path}: use a .safetensors, .pt or .pth name")
    header = {"format": FORMAT, "arch": arch,
              "labels": json.dumps([e.label for e in _check_labels(labels)]),
              "preprocessing": _preprocessing_json(preprocessing),
              **{str(k): str(v) for k, v in meta.items()}}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    # A unique temporary name beside the target, so the rename is atomic on the same file system.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(tmp), metadata=header)
            os.chmod(tmp, 0o644)  # safetensors creates its files owner-only; a checkpoint is meant to be shared
        else:
            torch.save({**header, "state_dict": tensors}, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise SinkError(f"cannot write classifier checkpoint {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read(path: Path) -> tuple[dict, dict]:
    """(header, state dict on CPU) from either file kind; unreadable files are a WeightsError."""
    try:
        if path.suffix.lower() in _TORCH_SUFFIXES:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
                raise WeightsError(f"{path} is not a fersr classifier checkpoint: expected a dict with "
                                   f"'format', 'arch', 'labels', 'preprocessing' and 'state_dict'")
            state = blob.pop("state_dict")
            return blob, state
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = dict(f.metadata() or {})
            return header, {k: f.get_tensor(k) for k in f.keys()}
    except WeightsError:
        raise
    except Exception as exc:  # safetensors, pickle and zip errors share no base class
        hint = " (a Keras file: convert it with `python -m fersr_stream.classify.convert`)" \
            if path.suffix.lower() in (".h5", ".hdf5") else ""
        raise WeightsError(f"cannot read classifier checkpoint {path}{hint}: {unreadable(path, exc)}") from None


def _json_field(header: dict, key: str, path: Path):
    value = header.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise WeightsError(f"{path}: checkpoint metadata {key!r} is not valid JSON") from None
    if value is None:
        raise WeightsError(f"{path}: checkpoint metadata lacks {key!r}")
    return value


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, tuple[Emotion, ...], Preprocessing, dict[str, str]]:
    """Read a fersr classifier checkpoint.

    Returns:
        (model in eval mode on ``device``, output labels, preprocessing, the other metadata entries
        including ``format`` and ``arch``).
    """
    path = Path(path)
    if path.is_dir():  # a study's cell folder, say: its model.safetensors is meant
        inside = path / "model.safetensors"
        hint = f"; did you mean {inside}?" if inside.is_file() else ""
        raise WeightsError(f"{path} is a folder, not a classifier checkpoint file{hint}")
    if not path.is_file():
        raise WeightsError(f"classifier weights not found: {path}")
    header, state = _read(path)
    if header.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a fersr classifier checkpoint (format={header.get('format')!r}, "
                           f"expected {FORMAT!r})")
    arch = header.get("arch")
    if arch not in ARCHITECTURES:
        raise WeightsError(f"{path}: unknown classifier arch {arch!r}; expected one of "
                           f"{', '.join(ARCHITECTURES.names())}")
    try:
        labels = _check_labels(_json_field(header, "labels", path))
        fields = dict(_json_field(header, "preprocessing", path))
        fields.pop("labels", None)  # the checkpoint's own ``labels`` entry is authoritative
        preprocessing = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()},
                                      labels=tuple(e.label for e in labels))
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: bad checkpoint metadata: {exc}") from None
    # Built on the meta device, then the checkpoint's tensors are adopted: no time spent on random init
    # (134M parameters for vgg16). Floats are cast to float32 because inputs are prepared as float32.
    with torch.device("meta"):
        model = build(arch, len(labels))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError:
        raise WeightsError(f"{path}: weights do not fit the {arch} architecture "
                           f"({describe_mismatch(model, state)})") from None
    meta = {k: str(v) for k, v in header.items() if k not in ("labels", "preprocessing")}
    return model.to(device).eval(), labels, preprocessing, meta


def describe_mismatch(model: nn.Module, state: dict) -> str:
    """A short description of how ``state`` differs from ``model``'s state dict."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {expected[k]}" for k in expected
              if k in state and tuple(state[k].shape) != expected[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if shapes:
        parts.append(f"{len(shapes)} of other shape, e.g. {shapes[0]}")
    return "; ".join(parts)
