"""Per-record losses of a run's models: the numbers every attack in the audit starts from.

The models are rebuilt exactly as the devices build them (the base model, the final global
adapter completed as a device completes it, a device's personalized adapter), and each record's
loss is its mean next-token NLL — the same loss DP-SGD clips per record (`client.dp_training`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from client.dp_training import encode, per_record_loss
from client.device import BaseModelCache, device_model
from client.personalize import load_global_adapter
from fedpriv.adapter_parts import ClientPlan
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, load_adapter_state, load_tokenizer


class RunModels:
    """The base, global and personalized models of one finished run, built on demand."""

    def __init__(self, run_dir: Path, config: RunConfig, mode: str) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.mode = mode
        self.cache = BaseModelCache(config.model)
        self.tokenizer = load_tokenizer(config.model)

    def base(self):
        return self.cache.lora_model(self.config)  # a fresh adapter: B = 0, so exactly the base model

    def global_model(self):
        # a run's saved global adapter holds every LoRA tensor: nothing to rebuild, no private part
        state = load_global_adapter(self.run_dir / "adapters" / "final")
        return device_model(self.cache, self.config, ClientPlan(mode=self.mode), state, None)

    def personalized(self, client_id: str):
        """The device's personalized (private) adapter, or None if it was not personalized."""
        from safetensors.torch import load_file

        from client.device import PERSONALIZED_FILE

        path = Path(self.config.state_dir or self.run_dir / "devices") / client_id / PERSONALIZED_FILE
        if not path.is_file():
            return None
        model = self.cache.lora_model(self.config)
        load_adapter_state(model, {**adapter_state(model), **load_file(str(path))})
        return model

    def losses(self, model, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        return record_losses(model, self.tokenizer, texts, self.config.max_seq_len, batch_size)


@torch.no_grad()
def record_losses(model, tokenizer, texts: Sequence[str], max_seq_len: int, batch_size: int = 32) -> np.ndarray:
    """Mean token NLL of each text under `model` (nats), in the order given."""
    if not texts:
        return np.zeros(0)
    model.eval()
    out: list[np.ndarray] = []
    for input_ids, attention_mask, labels in DataLoader(encode(tokenizer, list(texts), max_seq_len), batch_size=batch_size):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        out.append(per_record_loss(logits.float(), labels).double().numpy())
    return np.concatenate(out)
