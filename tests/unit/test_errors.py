"""What a user reads when a weights file cannot be read: the reason in words, from the reader's exception."""

from __future__ import annotations

import fractions

import pytest
import torch

from fersr_stream.errors import unreadable


def _torch_error(path):
    with pytest.raises(Exception) as info:
        torch.load(path, map_location="cpu", weights_only=True)
    return info.value


def test_empty_cut_short_foreign_and_pickled_objects(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert unreadable(empty, _torch_error(empty)) == "the file is empty (0 bytes)"
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.zeros(1000)}, whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[:2000])  # a download cut short
    assert unreadable(cut, _torch_error(cut)) == "the file ends early (cut short? get it again)"
    text = tmp_path / "notes.pth"
    text.write_text("hello, these are not weights\n")
    assert unreadable(text, _torch_error(text)) == "it is not a PyTorch or safetensors checkpoint"
    from safetensors import safe_open

    json_file = tmp_path / "fit.json"
    json_file.write_text('{"history": []}')
    with pytest.raises(Exception) as info:
        safe_open(str(json_file), framework="pt")
    assert unreadable(json_file, info.value) == "it is not a PyTorch or safetensors checkpoint"
    objects = tmp_path / "objects.pth"
    torch.save({"w": fractions.Fraction(1, 3)}, objects)  # a real checkpoint, but of more than tensors
    assert unreadable(objects, _torch_error(objects)).startswith("torch will not read it as plain tensors")
