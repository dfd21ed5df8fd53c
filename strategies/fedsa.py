"""FedSA-LoRA (ICLR 2025): only lora_A is shared and aggregated; lora_B stays on the device.

A carries general knowledge, B the client-specific part. The global adapter held by the server
contains lora_A only: any lora_B (or other adapter tensor) in the initial arrays is dropped before
the first message, so no B ever appears in a train or evaluate instruction, and a reply that
carries one is rejected (unexpected keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from logging import WARNING

import numpy as np
from flwr.common import log

from fedpriv.adapter_parts import lora_role
from fedpriv.errors import ConfigError
from strategies.base import LoraStrategy


class FedSALora(LoraStrategy):
    """FedSA-LoRA: weighted average of A only; B is never sent by the server nor accepted from clients."""

    mode = "fedsa"
    _warned_drop = False

    def prepare_global(self, global_arrays: dict[str, np.ndarray], server_round: int) -> dict[str, np.ndarray]:
        kept = {k: v for k, v in global_arrays.items() if lora_role(k) == "A"}
        if not kept:
            raise ConfigError("strategy", "fedsa: the global adapter has no lora_A tensors")
        dropped = len(global_arrays) - len(kept)
        if dropped and not self._warned_drop:
            self._warned_drop = True
            log(WARNING, "fedsa: dropping %d non-lora_A tensors from the global adapter; they stay on the devices",
                dropped)
        return kept

    def eval_keys(self, global_arrays: Mapping[str, np.ndarray]) -> list[str]:
        return [k for k in global_arrays if lora_role(k) == "A"]
