"""Global adapter checkpoints in peft's `save_pretrained` layout.

Written directly (LoraConfig JSON + safetensors of the adapter state) so the server never needs the
base model; `PeftModel.from_pretrained(base, path)` loads the result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from fedpriv.config import RunConfig
from fedpriv.modeling import lora_config, resolve_model


def save_adapter(directory: Path, state: dict[str, torch.Tensor], config: RunConfig) -> Path:
    """Write the checkpoint into a hidden sibling folder, then rename it into place.

    A crash or a full disk mid-write thus leaves either no checkpoint or a complete one, never a
    config next to truncated weights that peft would try to load.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}-"))
    try:
        peft_config = lora_config(config)
        peft_config.base_model_name_or_path = resolve_model(config.model)
        peft_config.save_pretrained(str(staging))
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / "adapter_model.safetensors"))
        if directory.exists():  # a rerun into the same run folder replaces its checkpoint
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
