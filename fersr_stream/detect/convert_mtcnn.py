"""Convert facenet-pytorch's MTCNN state dicts into the one safetensors file that fersr ships.

    pip download facenet-pytorch==2.6.0 --no-deps
    python -m fersr_stream.detect.convert_mtcnn facenet_pytorch-2.6.0-py3-none-any.whl mtcnn.safetensors

The source is ``facenet_pytorch/data/{pnet,rnet,onet}.pt`` (plain state dicts, read weights-only) in the wheel, or
in a folder holding the unpacked wheel or the three files. Their keys are prefixed with the net's name; each net's
keys and shapes are checked against :mod:`fersr_stream.detect.mtcnn_nets`' modules first, so another file fails here
with a message instead of at load time. The wheel's name and the sha256 of it and of each file go into the
output's metadata (see NOTICE).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import click
import torch

from ..cli import Command
from ..errors import WeightsError, one_line
from .mtcnn_nets import MTCNN, NETS

IN_WHEEL = "facenet_pytorch/data/{}.pt"
LICENCE = "MIT"
COPYRIGHT = "Copyright (c) 2019 Timothy Esler"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_sources(source: str | Path) -> dict[str, bytes]:
    """The bytes of ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` from a wheel (zip) or a folder.

    Raises:
        WeightsError: the source is missing, or lacks one of the files.
    """
    source = Path(source)
    files = {}
    if source.is_file():
        try:
            with zipfile.ZipFile(source) as wheel:
                names = set(wheel.namelist())
                for net in NETS:
                    if IN_WHEEL.format(net) not in names:
                        raise WeightsError(f"{source} has no {IN_WHEEL.format(net)}; expected the "
                                           f"facenet-pytorch wheel")
                    files[net] = wheel.read(IN_WHEEL.format(net))
        except zipfile.BadZipFile:
            raise WeightsError(f"{source} is not a wheel (zip file); expected the facenet-pytorch wheel") from None
    elif source.is_dir():
        for net in NETS:
            found = [p for p in (source / IN_WHEEL.format(net), source / f"{net}.pt") if p.is_file()]
            if not found:
                raise WeightsError(f"{source} has neither {IN_WHEEL.format(net)} nor {net}.pt")
            files[net] = found[0].read_bytes()
    else:
        raise WeightsError(f"MTCNN source not found: {source}")
    return files


def state_dict(files: dict[str, bytes]) -> dict[str, torch.Tensor]:
    """One prefixed state dict (``pnet.conv1.weight``...) from the three files, checked against the modules.

    Raises:
        WeightsError: a file that is not a state dict of the net it is named after.
    """
    want = MTCNN().state_dict()
    state = {}
    for net in NETS:
        try:
            part = torch.load(io.BytesIO(files[net]), map_location="cpu", weights_only=True)
        except Exception as exc:  # zip reader, unpickler or torch: the file is unusable either way
            raise WeightsError(f"cannot read {net}.pt as a state dict: {one_line(exc)}") from None
        if not isinstance(part, dict) or not all(isinstance(v, torch.Tensor) for v in part.values()):
            raise WeightsError(f"{net}.pt holds no state dict of tensors")
        expected = {k.split(".", 1)[1]: v.shape for k, v in want.items() if k.startswith(net + ".")}
        if set(part) != set(expected):
            odd = sorted(set(part) ^ set(expected))
            raise WeightsError(f"{net}.pt is not facenet-pytorch's {net}: keys differ ({', '.join(odd[:3])}...)")
        for key, shape in expected.items():
            if part[key].shape != shape or part[key].dtype != torch.float32:
                raise WeightsError(f"{net}.pt is not facenet-pytorch's {net}: {key} is {tuple(part[key].shape)} "
                                   f"{part[key].dtype}, expected {tuple(shape)} torch.float32")
            state[f"{net}.{key}"] = part[key].contiguous()
    return state


def convert(source: str | Path, out: str | Path) -> Path:
    """Write the safetensors file ``out`` from the facenet-pytorch wheel or folder ``source``; return ``out``."""
    from safetensors.torch import save_file

    source, out = Path(source), Path(out)
    files = read_sources(source)
    state = state_dict(files)
    meta = {"source": source.name, "licence": LICENCE, "copyright": COPYRIGHT,
            "converted_by": "fersr_stream.detect.convert_mtcnn"}
    if source.is_file():
        meta["source_sha256"] = _sha256(source.read_bytes())
    meta.update({f"{net}_sha256": _sha256(files[net]) for net in NETS})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=meta)
    return out


@click.command("python -m fersr_stream.detect.convert_mtcnn", cls=Command)
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def main(source: Path, out: Path) -> None:
    """Convert facenet-pytorch's MTCNN weights (its wheel, or a folder) into fersr's safetensors file."""
    path = convert(source, out)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
