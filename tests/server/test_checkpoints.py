"""Global adapter checkpoints: peft-loadable, and never half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

import server.checkpoints as checkpoints
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, build_lora_model, load_base_model


def _trained_state(config: RunConfig) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = adapter_state(build_lora_model(config))
    return {k: v + 0.01 * torch.randn_like(v) for k, v in state.items()}  # B is zero at init: move it


def test_checkpoint_loads_with_peft_and_holds_the_state(tmp_path: Path) -> None:
    config = RunConfig().validated()
    state = _trained_state(config)
    directory = checkpoints.save_adapter(tmp_path / "adapters" / "final", state, config)
    loaded = PeftModel.from_pretrained(load_base_model(config.model), str(directory))
    for key, value in state.items():
        assert torch.equal(adapter_state(loaded)[key], value), key
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["final"]  # no staging folder left


def test_failed_write_keeps_the_previous_checkpoint_and_leaves_nothing_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = RunConfig().validated()
    first = _trained_state(config)
    directory = checkpoints.save_adapter(tmp_path / "final", first, config)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        checkpoints.save_adapter(directory, {k: v * 2 for k, v in first.items()}, config)
    kept = load_file(str(directory / "adapter_model.safetensors"))
    assert all(torch.equal(kept[k], v) for k, v in first.items())
    assert [p.name for p in tmp_path.iterdir()] == ["final"]

    with pytest.raises(OSError):
        checkpoints.save_adapter(tmp_path / "round-001", first, config)
    assert not (tmp_path / "round-001").exists()  # a failed first write leaves no checkpoint at all
