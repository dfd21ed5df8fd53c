"""fedpriv.files: a write replaces the file in one step, and a failed write leaves the old file and no
temporary file behind (the privacy ledger and the device's adapters rely on it)."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from fedpriv.files import write_atomically, write_tensors_atomically


def test_write_creates_folders_replaces_the_file_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "device" / "ledger.json"
    write_atomically(target, "ε → first")
    assert target.read_bytes() == "ε → first".encode("utf-8")
    write_atomically(target, b"\x00second")
    assert target.read_bytes() == b"\x00second"
    assert [p.name for p in target.parent.iterdir()] == ["ledger.json"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch, failing) -> None:
    target = tmp_path / "ledger.json"
    write_atomically(target, "old")

    def crash(*args, **kwargs):
        raise OSError(f"simulated crash in {failing}")

    monkeypatch.setattr(os, failing, crash)
    with pytest.raises(OSError, match="simulated crash"):
        write_atomically(target, "new, never complete")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]


def test_tensors_round_trip_through_safetensors(tmp_path) -> None:
    tensors = {"lora_B": torch.arange(6, dtype=torch.float32).reshape(2, 3).t(), "lora_A": torch.ones(1, 4)}
    target = tmp_path / "private_adapter.safetensors"
    write_tensors_atomically(target, tensors)  # a transposed (non-contiguous) tensor is stored too
    loaded = load_file(target)
    assert set(loaded) == set(tensors)
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value)
