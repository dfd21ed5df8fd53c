"""Client-side helpers for LoRA personalization modes (pure functions, no Flower app code).

A peft adapter state dict (``peft.get_peft_model_state_dict(model)``) holds, per adapted module,
a down-projection ``...lora_A.weight`` of shape ``[r, in]`` and an up-projection
``...lora_B.weight`` of shape ``[out, r]`` (embeddings: ``...lora_embedding_A`` ``[r, vocab]`` and
``...lora_embedding_B`` ``[dim, r]``; convolutions carry trailing kernel dimensions). The rank axis
is axis 0 of an A tensor and axis 1 of a B tensor.

What each federated mode shares (see docs/strategies.md):

=========  =========================================  ======================================
mode       shared with the server (sent and received)  stays on the device
=========  =========================================  ======================================
fedavg     lora_A, lora_B, other adapter tensors       nothing
hetlora    lora_A, lora_B (at the client's own rank)   nothing
ffa        lora_B, other adapter tensors               lora_A (frozen at a shared seeded init)
fedsa      lora_A                                      lora_B and every other adapter tensor
=========  =========================================  ======================================

Functions accept dicts of numpy arrays or torch tensors and return values of the same kind.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES: tuple[str, ...] = ("fedavg", "ffa", "hetlora", "fedsa")

# Config keys the server-side strategies add to every train/evaluate instruction.
CONFIG_MODE = "lora-mode"  # str: one of MODES
CONFIG_RANK = "lora-rank"  # int: (hetlora) the rank this client must train at; same key as the run config's
CONFIG_ALPHA = "lora-alpha"  # float: (hetlora) rescaled so lora_alpha / rank is equal on every client
CONFIG_A_SEED = "lora-a-seed"  # int: (ffa) seed of the shared frozen lora_A
CONFIG_A_INIT = "lora-a-init"  # str: (ffa) distribution of the shared frozen lora_A
# Keys that are not part of the run config and must be removed before parsing it.
STRATEGY_ONLY_CONFIG_KEYS: tuple[str, ...] = (CONFIG_MODE, CONFIG_A_SEED, CONFIG_A_INIT)

A_INITS: tuple[str, ...] = ("kaiming_uniform", "gaussian")

_ROLE_RE = re.compile(r"\.lora_(?:embedding_)?([AB])(?:\.weight)?$")
# Parameter names inside a peft model carry the adapter name: "...lora_A.default.weight".
_PARAM_ROLE_RE = re.compile(r"\.lora_(?:embedding_)?([AB])(?:\.|$)")


# ---------------------------------------------------------------------------------------------
# Key roles


def lora_role(key: str) -> str | None:
    """``"A"`` for a lora_A / lora_embedding_A key, ``"B"`` for lora_B / lora_embedding_B, else None."""
    match = _ROLE_RE.search(key)
    return match.group(1) if match else None


def module_name(key: str) -> str | None:
    """The adapted module a LoRA factor belongs to (the key up to ``.lora_A``/``.lora_B``)."""
    match = _ROLE_RE.search(key)
    return key[: match.start()] if match else None


def partner_key(key: str) -> str | None:
    """The B key for an A key and vice versa (None for non-LoRA keys)."""
    match = _ROLE_RE.search(key)
    if not match:
        return None
    role = match.group(1)
    other = "B" if role == "A" else "A"
    start, end = match.span(1)
    return key[:start] + other + key[end:]


def rank_axis(key: str) -> int | None:
    """Axis that carries the LoRA rank: 0 for A, 1 for B, None for non-LoRA keys."""
    role = lora_role(key)
    if role is None:
        return None
    return 0 if role == "A" else 1


def shared_roles(mode: str) -> frozenset[str]:
    """Roles a mode sends to the server: subsets of {"A", "B", "other"}."""
    _check_mode(mode)
    if mode == "ffa":
        return frozenset({"B", "other"})
    if mode == "fedsa":
        return frozenset({"A"})
    return frozenset({"A", "B", "other"})


def is_shared(key: str, mode: str) -> bool:
    """Whether ``key`` is sent to the server in ``mode``."""
    return (lora_role(key) or "other") in shared_roles(mode)


def split_adapter(state_dict: Mapping[str, Any], mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an adapter state dict into (shared, private) for ``mode``.

    ``shared`` is what the client puts into its reply ``"arrays"`` record; ``private`` never leaves
    the device. In ``fedsa`` no lora_B tensor is ever in ``shared``; in ``ffa`` no lora_A is.
    """
    shared: dict[str, Any] = {}
    private: dict[str, Any] = {}
    for key, value in state_dict.items():
        (shared if is_shared(key, mode) else private)[key] = value
    return shared, private


def merge_adapter(private: Mapping[str, Any], shared: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild a full adapter state dict: the device's private tensors plus what the server sent."""
    merged = dict(private)
    merged.update(shared)
    return merged


# ---------------------------------------------------------------------------------------------
# Shared seeded lora_A (FFA-LoRA)


def _stream_seed(seed: int, key: str) -> np.random.SeedSequence:
    digest = hashlib.sha256(f"fedpriv-lora-A:{key}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF, *words])


def _shape_of(value: Any) -> tuple[int, ...]:
    if isinstance(value, tuple | list):
        return tuple(int(v) for v in value)
    return tuple(int(v) for v in value.shape)


def seeded_lora_A(key: str, shape: tuple[int, ...], seed: int, init: str = "kaiming_uniform") -> np.ndarray:
    """The shared lora_A for one module: a function of (seed, key, shape) only, float32.

    Values are drawn row by row from a per-key stream, so the rank-r matrix is the first r rows of
    the rank-R matrix (r <= R) for ``kaiming_uniform``.
    ``kaiming_uniform`` matches peft's default lora_A init (kaiming_uniform with a=sqrt(5), i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))); ``gaussian`` matches peft's ``init_lora_weights="gaussian"``
    (N(0, 1/r^2)).
    """
    if init not in A_INITS:
        raise ValueError(f"unknown lora_A init {init!r}; expected one of {A_INITS}")
    shape = tuple(int(s) for s in shape)
    if not shape or shape[0] <= 0:
        raise ValueError(f"lora_A shape must start with the rank, got {shape} for {key}")
    rng = np.random.Generator(np.random.PCG64(_stream_seed(seed, key)))
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if init == "kaiming_uniform":
        bound = 1.0 / np.sqrt(fan_in)
        values = rng.uniform(-bound, bound, size=shape)
    else:
        values = rng.standard_normal(size=shape) * (1.0 / shape[0])
    return values.astype(np.float32)


def shared_lora_A_init(
    shapes: Mapping[str, Any], seed: int, init: str = "kaiming_uniform"
) -> dict[str, np.ndarray]:
    """Deterministic lora_A for every A key in ``shapes`` (a state dict or a ``{key: shape}`` map).

    Same seed and shapes give bit-identical A on every client and on the server. Non-A keys are
    ignored. Returns float32 numpy arrays.
    """
    return {
        key: seeded_lora_A(key, _shape_of(value), seed, init)
        for key, value in shapes.items()
        if lora_role(key) == "A"
    }


def apply_shared_lora_A(
    state_dict: Mapping[str, Any], seed: int, init: str = "kaiming_uniform"
) -> dict[str, Any]:
    """Return ``state_dict`` with every lora_A replaced by the shared seeded init (same value kind)."""
    out = dict(state_dict)
    for key, value in shared_lora_A_init(state_dict, seed, init).items():
        out[key] = _like(state_dict[key], value)
    return out


def set_trainable_for_mode(model: Any, mode: str) -> int:
    """Set ``requires_grad`` on a peft model's LoRA parameters for ``mode``.

    ``ffa`` freezes every lora_A (only B is trained); the other modes train A and B (``fedsa``
    trains both but shares only A). Returns the number of trainable LoRA parameters tensors.
    """
    _check_mode(mode)
    trainable = 0
    for name, param in model.named_parameters():
        match = _PARAM_ROLE_RE.search(name)
        if match is None:
            continue
        role = match.group(1)
        param.requires_grad = not (mode == "ffa" and role == "A")
        trainable += int(param.requires_grad)
    return trainable


# ---------------------------------------------------------------------------------------------
# Ranks (HetLoRA / FlexLoRA)


def adapter_ranks(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """Rank of each adapted module (read from its A tensor, or from B when A is absent)."""
    ranks: dict[str, int] = {}
    for key, value in state_dict.items():
        axis = rank_axis(key)
        if axis is None:
            continue
        module = module_name(key)
        rank = _shape_of(value)[axis]
        if module in ranks and ranks[module] != rank:
            raise ValueError(f"inconsistent rank for {module}: A and B disagree ({ranks[module]} vs {rank})")
        ranks[module] = rank
    return ranks


def adapter_rank(state_dict: Mapping[str, Any]) -> int:
    """The (largest) LoRA rank in an adapter state dict."""
    ranks = adapter_ranks(state_dict)
    if not ranks:
        raise ValueError("no lora_A / lora_B tensors in the state dict")
    return max(ranks.values())


def resize_factor(key: str, value: Any, rank: int) -> Any:
    """Zero-pad or truncate one LoRA factor along its rank axis to ``rank`` (non-LoRA: unchanged)."""
    axis = rank_axis(key)
    if axis is None:
        return value
    if rank <= 0:
        raise ValueError(f"rank must be positive, got {rank}")
    arr = _to_numpy(value)
    current = arr.shape[axis]
    if rank == current:
        out = arr.copy()
    elif rank < current:
        index = [slice(None)] * arr.ndim
        index[axis] = slice(0, rank)
        out = arr[tuple(index)].copy()
    else:
        pad = [(0, 0)] * arr.ndim
        pad[axis] = (0, rank - current)
        out = np.pad(arr, pad)
    return _like(value, out)


def resize_adapter(state_dict: Mapping[str, Any], rank: int) -> dict[str, Any]:
    """Zero-pad (rank above the current one) or truncate (below) every LoRA factor to ``rank``.

    Truncation keeps the first ``rank`` rows of A and columns of B; padding appends zero rows /
    columns, so ``resize_adapter(resize_adapter(sd, R), r) == sd`` for r = rank(sd) <= R, and a
    zero-padded adapter computes the same ΔW = B·A.
    """
    return {key: resize_factor(key, value, rank) for key, value in state_dict.items()}


def pad_to_shapes(update: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """Zero-pad every LoRA factor of ``update`` along its rank axis to the rank of ``shapes[key]``.

    HetLoRA's zero-padding done on the device: a device trains at its own rank r ≤ R and, when the
    server may not see its update (secure aggregation), sends it at the global rank R, as the
    server would have padded it (``pad_target="update"``). A key not in ``shapes``, a rank above the
    target's or any other shape mismatch raises ValueError."""
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key not in shapes:
            raise ValueError(f"tensor {key!r} is not part of the aggregated update")
        target = tuple(int(s) for s in shapes[key])
        current = _shape_of(value)
        axis = rank_axis(key)
        if current != target and axis is not None and len(current) == len(target) and current[axis] <= target[axis]:
            value = resize_factor(key, value, target[axis])
            current = _shape_of(value)
        if current != target:
            raise ValueError(f"tensor {key!r} has shape {current}, the aggregated update {target}")
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# What the server asked for


@dataclass(frozen=True)
class ClientPlan:
    """The personalization instructions a train/evaluate config carries."""

    mode: str = "fedavg"
    rank: int | None = None  # hetlora: the rank to train at (also the run config's lora-rank)
    a_seed: int | None = None  # ffa: seed of the shared frozen lora_A
    a_init: str = "kaiming_uniform"

    @property
    def trains_A(self) -> bool:
        return self.mode != "ffa"

    def shared_part(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """The tensors to put into the reply ``"arrays"`` record."""
        return split_adapter(state_dict, self.mode)[0]


def plan_from_config(config: Mapping[str, Any]) -> ClientPlan:
    """Read the strategy's instructions from a train/evaluate ConfigRecord (no mutation)."""
    mode = str(config.get(CONFIG_MODE, "fedavg"))
    _check_mode(mode)
    rank = config.get(CONFIG_RANK)
    seed = config.get(CONFIG_A_SEED)
    return ClientPlan(
        mode=mode,
        rank=int(rank) if rank is not None and mode == "hetlora" else None,
        a_seed=int(seed) if seed is not None else None,
        a_init=str(config.get(CONFIG_A_INIT, "kaiming_uniform")),
    )


def pop_strategy_config(values: MutableMapping[str, Any]) -> ClientPlan:
    """Read the plan and remove the strategy-only keys (``lora-mode``, ``lora-a-seed``,
    ``lora-a-init``) so the remaining dict parses as a run config. ``lora-rank`` / ``lora-alpha``
    are run-config keys and are left in place (hetlora overrides them per client)."""
    plan = plan_from_config(values)
    for key in STRATEGY_ONLY_CONFIG_KEYS:
        values.pop(key, None)
    return plan


# ---------------------------------------------------------------------------------------------
# helpers


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown LoRA federation mode {mode!r}; expected one of {MODES}")


def _to_numpy(value: Any) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _like(reference: Any, array: np.ndarray) -> Any:
    """``array`` as the same kind (numpy / torch, dtype) as ``reference``."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(reference, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(array)).to(dtype=reference.dtype, device=reference.device)
    if isinstance(reference, np.ndarray):
        return array.astype(reference.dtype, copy=False)
    return array
