"""Global adapter checkpoints in peft's `save_pretrained` layout.

Written directly (LoraConfig JSON + safetensors of the adapter state) so the server never needs the
base model; `PeftModel.from_pretrained(base, path)` loads the result.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from fedpriv.config import RunConfig
from fedpriv.modeling import lora_config, resolve_model


def save_adapter(directory: Path, state: dict[str, torch.Tensor], config: RunConfig) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    peft_config = lora_config(config)
    peft_config.base_model_name_or_path = resolve_model(config.model)
    peft_config.save_pretrained(str(directory))
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "adapter_model.safetensors"))
    return directory
