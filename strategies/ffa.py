"""FFA-LoRA (Sun et al., ICLR 2024): lora_A frozen at a shared seeded init, only B trained and sent.

With every client holding the same A₀, mean(B_i)·A₀ == mean(B_i·A₀): averaging is exact, DP noise
enters linearly, and uploads halve. The server keeps A₀ fixed and aggregates only B (and any
non-LoRA adapter tensors).
"""

from __future__ import annotations

from collections.abc import Mapping
from logging import WARNING
from typing import Any

import numpy as np
from flwr.app import ConfigRecord
from flwr.common import log

from fedpriv.adapter_parts import A_INITS, CONFIG_A_INIT, CONFIG_A_SEED, CONFIG_MODE, lora_role, shared_lora_A_init
from fedpriv.errors import ConfigError
from strategies.base import LoraStrategy


class FFALora(LoraStrategy):
    """FFA-LoRA.

    Parameters (besides :class:`LoraStrategy`'s)
    ----------
    a_seed : int | None (default 0)
        Seed of the shared frozen lora_A. The server replaces every lora_A of the global adapter
        with ``fedpriv.adapter_parts.shared_lora_A_init(shapes, a_seed, a_init)`` and keeps it
        fixed; clients rebuild the same A from ``lora-a-seed`` / ``lora-a-init`` in the config.
        ``None``: A is whatever the initial global adapter holds and is sent every round.
    a_init : "kaiming_uniform" | "gaussian"
    send_a : bool (default False)
        Also send A₀ in train instructions (clients then need not rebuild it; downloads double).
        Evaluate instructions always carry the full adapter.
    """

    mode = "ffa"

    def __init__(self, *, a_seed: int | None = 0, a_init: str = "kaiming_uniform", send_a: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if a_init not in A_INITS:
            raise ConfigError("ffa-a-init", f"must be one of {', '.join(A_INITS)}, got {a_init!r}")
        if a_seed is not None and (not isinstance(a_seed, int) or isinstance(a_seed, bool) or a_seed < 0):
            raise ConfigError("ffa-a-seed", f"must be a non-negative integer, got {a_seed!r}")
        self.a_seed = a_seed
        self.a_init = a_init
        self.send_a = bool(send_a) or a_seed is None
        self.frozen_A: dict[str, np.ndarray] | None = None

    def prepare_global(self, global_arrays: dict[str, np.ndarray], server_round: int) -> dict[str, np.ndarray]:
        a_keys = [k for k in global_arrays if lora_role(k) == "A"]
        if not a_keys:
            raise ConfigError("strategy", "ffa: the global adapter has no lora_A tensors")
        if self.frozen_A is None:
            if self.a_seed is None:
                self.frozen_A = {k: global_arrays[k].copy() for k in a_keys}
            else:
                init = shared_lora_A_init({k: global_arrays[k].shape for k in a_keys}, self.a_seed, self.a_init)
                self.frozen_A = {k: init[k].astype(global_arrays[k].dtype) for k in a_keys}
                if any(not np.array_equal(global_arrays[k], self.frozen_A[k]) for k in a_keys):
                    log(WARNING, "ffa: lora_A of the global adapter set to the shared seeded init (seed=%d, %s)",
                        self.a_seed, self.a_init)
        elif any(not np.array_equal(global_arrays[k], self.frozen_A[k]) for k in a_keys if k in self.frozen_A):
            log(WARNING, "ffa: lora_A in the global adapter changed; restoring the frozen A")
        out = dict(global_arrays)
        out.update({k: v for k, v in self.frozen_A.items() if k in out})
        return out

    def train_keys(self, global_arrays: Mapping[str, np.ndarray]) -> list[str]:
        if self.send_a:
            return list(global_arrays)
        return self.reply_keys(global_arrays)

    def node_config(self, node_id: int, server_round: int, config: ConfigRecord) -> dict[str, Any]:
        extra: dict[str, Any] = {CONFIG_MODE: self.mode, CONFIG_A_INIT: self.a_init}
        if self.a_seed is not None:
            extra[CONFIG_A_SEED] = int(self.a_seed)
        return extra

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "a_seed": self.a_seed, "a_init": self.a_init, "send_a": self.send_a}
