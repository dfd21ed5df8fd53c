"""Heterogeneous-rank LoRA: HetLoRA (zero-padding) and FlexLoRA (SVD re-projection).

The server holds the global adapter at the maximum rank R. Each node trains at its own rank
r_i <= R: ``configure_train`` sends it the first r_i rows of every A and the first r_i columns of
every B (per-node messages, ``lora-rank = r_i`` in the config) and expects those shapes back.

Aggregation (``method``):

* ``zero_pad`` (HetLoRA, Cho et al., EMNLP 2024): pad each reply to rank R with zeros and average
  by num-examples. ``pad_target="update"`` (default) pads the *update* (reply − sent), so rank
  slices a client does not hold keep their global value plus the updates of the clients that do;
  ``pad_target="weights"`` pads the weights themselves, as in the paper (slices held by few
  clients shrink toward zero).
* ``svd`` (FlexLoRA, Bai et al., 2024): rebuild every client's full ΔW_i = B_i·A_i, average them
  by num-examples, and take the truncated SVD at rank R, split as B = U√S, A = √S Vᵀ. Because the
  singular values are ordered, truncating to r_i is the best rank-r_i approximation, which is
  what each client then receives. Computed without forming ΔW: ΣwᵢBᵢAᵢ = [w₁B₁ … wₙBₙ]·[A₁; …; Aₙ],
  QR of both factors, SVD of the small core.

A node's rank comes from, in order: ``client_ranks[node_id]``, ``client_ranks[client-id]`` (once
the node has replied with that client-id), ``rank_fn(node_id)``, its profile
(``node_profiles[node_id]``, or the ``"profile"`` string a client puts in its ``"client"`` reply
record) looked up in ``profile_ranks``, else ``default_rank`` (default: the smallest profile rank,
or R). With ``scale_alpha`` the config's ``lora-alpha`` is rescaled to ``alpha·r_i/R`` so
``lora_alpha / r`` (peft's scaling) is the same on every client and B·A means the same ΔW.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from flwr.app import ConfigRecord

from fedpriv.adapter_parts import CONFIG_ALPHA, CONFIG_MODE, CONFIG_RANK, lora_role, module_name, partner_key, rank_axis
from fedpriv.errors import ConfigError
from strategies.base import LoraStrategy, RoundState
from strategies.validation import ValidReply

DEFAULT_PROFILE_RANKS: dict[str, int] = {"phone": 4, "hospital": 16}
METHODS: tuple[str, ...] = ("zero_pad", "svd")
PAD_TARGETS: tuple[str, ...] = ("update", "weights")


def resize_to(value: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """Truncate or zero-pad ``value`` along ``axis`` to ``rank``."""
    current = value.shape[axis]
    if rank == current:
        return value
    if rank < current:
        index = [slice(None)] * value.ndim
        index[axis] = slice(0, rank)
        return value[tuple(index)]
    pad = [(0, 0)] * value.ndim
    pad[axis] = (0, rank - current)
    return np.pad(value, pad)


def flexlora_factors(
    Bs: Sequence[np.ndarray], As: Sequence[np.ndarray], weights: Sequence[float], rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """(B, A) at ``rank`` with B·A the best rank-``rank`` approximation of Σ wᵢ Bᵢ Aᵢ (w normalized)."""
    total = float(sum(weights))
    b_cat = np.concatenate([np.asarray(b, np.float64) * (w / total) for b, w in zip(Bs, weights, strict=True)], axis=1)
    a_cat = np.concatenate([np.asarray(a, np.float64) for a in As], axis=0)
    q_b, r_b = np.linalg.qr(b_cat)  # out×k, k×Σr
    q_a, r_a = np.linalg.qr(a_cat.T)  # in×k', k'×Σr
    u, s, vt = np.linalg.svd(r_b @ r_a.T)
    k = min(rank, s.shape[0])
    root = np.sqrt(s[:k])
    B = np.zeros((b_cat.shape[0], rank))
    A = np.zeros((rank, a_cat.shape[1]))
    B[:, :k] = (q_b @ u[:, :k]) * root
    A[:k] = root[:, None] * (vt[:k] @ q_a.T)
    return B, A


class HetLora(LoraStrategy):
    """Heterogeneous ranks; see the module docstring for rank resolution and methods."""

    mode = "hetlora"

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        *,
        client_ranks: Mapping[int | str, int] | None = None,
        profile_ranks: Mapping[str, int] | None = None,
        node_profiles: Mapping[int, str] | None = None,
        default_rank: int | None = None,
        rank_fn: Callable[[int], int | None] | None = None,
        method: str = "zero_pad",
        pad_target: str = "update",
        scale_alpha: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if method not in METHODS:
            raise ConfigError("hetlora-method", f"must be one of {', '.join(METHODS)}, got {method!r}")
        if pad_target not in PAD_TARGETS:
            raise ConfigError("hetlora-pad-target", f"must be one of {', '.join(PAD_TARGETS)}, got {pad_target!r}")
        if self.server_learning_rate != 1.0 and not (method == "zero_pad" and pad_target == "update"):
            # these methods rebuild the global adapter from the replies instead of adding an update
            how = "hetlora-method=svd" if method == "svd" else f"hetlora-pad-target={pad_target}"
            raise ConfigError("server-learning-rate", f"{how} replaces the global adapter instead of stepping it; only "
                              "hetlora-method=zero_pad with hetlora-pad-target=update takes a value other than 1")
        if self.secure_aggregation and not (method == "zero_pad" and pad_target == "update"):
            how = "hetlora-method=svd multiplies each client's factors" if method == "svd" else \
                f"hetlora-pad-target={pad_target} averages each client's padded weights"
            raise ConfigError("hetlora-method" if method == "svd" else "hetlora-pad-target",
                              f"{how}, which the server cannot do on a masked sum; secure aggregation supports hetlora "
                              "only with method=zero_pad and pad-target=update (devices pad their update to the global rank)")
        if method == "svd" and self.trim_beta is not None:
            raise ConfigError("trim-beta", "hetlora-method=svd averages full ΔW products; trimmed mean is not supported")
        self.client_ranks: dict[int | str, int] = dict(client_ranks or {})
        self.profile_ranks: dict[str, int] = dict(DEFAULT_PROFILE_RANKS if profile_ranks is None else profile_ranks)
        self.node_profiles: dict[int, str] = {int(k): str(v) for k, v in (node_profiles or {}).items()}
        for key, rank in [*self.client_ranks.items(), *self.profile_ranks.items()]:
            if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
                raise ConfigError("hetlora-client-ranks", f"rank for {key!r} must be a positive integer, got {rank!r}")
        for node, profile in self.node_profiles.items():
            if profile not in self.profile_ranks:
                raise ConfigError("hetlora-node-profiles", f"node {node}: unknown profile {profile!r} "
                                  f"(known: {', '.join(self.profile_ranks)})")
        if default_rank is not None and (not isinstance(default_rank, int) or default_rank <= 0):
            raise ConfigError("hetlora-default-rank", f"must be a positive integer, got {default_rank!r}")
        self.default_rank = default_rank
        self.rank_fn = rank_fn
        self.method = method
        self.pad_target = pad_target
        self.scale_alpha = bool(scale_alpha)
        self.learned_profiles: dict[int, str] = {}
        self.rank_history: dict[int, dict[int, int]] = {}  # round -> node -> rank sent
        self._global_rank: int | None = None
        self._rank_cache: dict[int, int] = {}

    # ------------------------------------------------------------------------------------------
    # ranks

    def rank_for(self, node_id: int) -> int:
        node_id = int(node_id)
        if node_id in self.client_ranks:
            return int(self.client_ranks[node_id])
        client_id = self.node_client_ids.get(node_id)
        if client_id is not None and client_id in self.client_ranks:
            return int(self.client_ranks[client_id])
        if self.rank_fn is not None:
            rank = self.rank_fn(node_id)
            if rank is not None:
                return int(rank)
        profile = self.node_profiles.get(node_id) or self.learned_profiles.get(node_id)
        if profile is not None and profile in self.profile_ranks:
            return int(self.profile_ranks[profile])
        if self.default_rank is not None:
            return self.default_rank
        if self.profile_ranks:
            return min(self.profile_ranks.values())
        if self._global_rank is None:
            raise ConfigError("hetlora-default-rank", "no rank known for node and no global adapter yet")
        return self._global_rank

    def on_valid_reply(self, reply: ValidReply) -> None:
        super().on_valid_reply(reply)
        profile = reply.client.get("profile")
        if isinstance(profile, str) and profile in self.profile_ranks:
            self.learned_profiles[reply.node_id] = profile

    @staticmethod
    def module_ranks(global_arrays: Mapping[str, np.ndarray]) -> dict[str, int]:
        ranks: dict[str, int] = {}
        for key, value in global_arrays.items():
            axis = rank_axis(key)
            if axis is not None:
                ranks[module_name(key)] = int(value.shape[axis])
        return ranks

    def prepare_global(self, global_arrays: dict[str, np.ndarray], server_round: int) -> dict[str, np.ndarray]:
        ranks = self.module_ranks(global_arrays)
        if not ranks:
            raise ConfigError("strategy", "hetlora: the global adapter has no LoRA tensors")
        self._global_rank = max(ranks.values())
        self._rank_cache = {}  # ranks are resolved once per node per configure call
        return global_arrays

    def node_info(self, node_id: int) -> dict[str, Any]:
        node_id = int(node_id)
        if node_id in self._rank_cache:
            return {"rank": self._rank_cache[node_id]}
        rank = self.rank_for(node_id)
        if self._global_rank is not None and rank > self._global_rank:
            raise ConfigError("hetlora-client-ranks", f"rank {rank} for node {node_id} exceeds the global adapter rank "
                              f"{self._global_rank}; build the server's adapter at the maximum rank")
        self._rank_cache[node_id] = rank
        return {"rank": rank}

    def arrays_for_node(self, node_id: int, global_arrays: Mapping[str, np.ndarray], keys: Sequence[str]) -> dict[str, np.ndarray]:
        rank = self.node_info(node_id)["rank"]
        out: dict[str, np.ndarray] = {}
        for key in keys:
            value = global_arrays[key]
            axis = rank_axis(key)
            out[key] = value if axis is None else np.ascontiguousarray(resize_to(value, axis, min(rank, value.shape[axis])))
        return out

    def node_config(self, node_id: int, server_round: int, config: ConfigRecord) -> dict[str, Any]:
        rank = self.node_info(node_id)["rank"]
        self.rank_history.setdefault(server_round, {})[int(node_id)] = rank
        extra: dict[str, Any] = {CONFIG_MODE: self.mode, CONFIG_RANK: int(rank)}
        alpha = config.get(CONFIG_ALPHA)
        if self.scale_alpha and isinstance(alpha, int | float) and not isinstance(alpha, bool) and self._global_rank:
            extra[CONFIG_ALPHA] = float(alpha) * rank / self._global_rank
        return extra

    # ------------------------------------------------------------------------------------------
    # aggregation

    def to_global_space(self, node_id: int, arrays: Mapping[str, np.ndarray], state: RoundState) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key, value in arrays.items():
            axis = rank_axis(key)
            value = np.asarray(value, dtype=np.float64)
            if axis is not None:
                value = resize_to(value, axis, state.global_arrays[key].shape[axis])
            out[key] = value
        return out

    def aggregate_valid(self, state: RoundState, valid: Sequence[ValidReply]) -> dict[str, np.ndarray]:
        if self.method == "zero_pad" and self.pad_target == "update":
            return super().aggregate_valid(state, valid)
        weights = [r.num_examples for r in valid]
        updates = self.bounded_updates(valid, state)
        # Effective (norm-bounded) replies in the global space: padded sent + bounded update.
        full = []
        for reply, update in zip(valid, updates, strict=True):
            sent = self.to_global_space(reply.node_id, {k: state.sent[reply.node_id][k] for k in update}, state)
            full.append({k: sent[k] + update[k] for k in update})
        if self.method == "zero_pad":  # pad_target == "weights": HetLoRA as in the paper
            averaged = self.combine(full, weights)
            return self._cast(state, averaged)
        return self._cast(state, self._svd_aggregate(state, full, weights))

    def _svd_aggregate(self, state: RoundState, full: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        keys = list(full[0])
        done: set[str] = set()
        for key in keys:
            if key in done:
                continue
            role = lora_role(key)
            if role is None:
                out[key] = _wmean([f[key] for f in full], weights)
                done.add(key)
                continue
            other = partner_key(key)
            a_key, b_key = (key, other) if role == "A" else (other, key)
            if a_key not in full[0] or b_key not in full[0]:
                raise ConfigError("hetlora-method", f"svd needs both factors of {module_name(key)} in the replies")
            A0, B0 = state.global_arrays[a_key], state.global_arrays[b_key]
            if A0.ndim != 2 or B0.ndim != 2:
                raise ConfigError("hetlora-method", f"svd supports 2-D LoRA factors only ({module_name(key)})")
            B, A = flexlora_factors([f[b_key] for f in full], [f[a_key] for f in full], weights, A0.shape[0])
            out[a_key], out[b_key] = A, B
            done.update({a_key, b_key})
        return out

    @staticmethod
    def _cast(state: RoundState, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        new: dict[str, np.ndarray] = {}
        for key, value in state.global_arrays.items():
            new[key] = np.asarray(arrays[key]).astype(value.dtype) if key in arrays else value
        return new

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "method": self.method,
            "pad_target": self.pad_target,
            "client_ranks": {str(k): v for k, v in self.client_ranks.items()},
            "profile_ranks": dict(self.profile_ranks),
            "default_rank": self.default_rank,
            "scale_alpha": self.scale_alpha,
        }


def _wmean(values: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    total = float(sum(weights))
    out = np.zeros_like(np.asarray(values[0], dtype=np.float64))
    for value, weight in zip(values, weights, strict=True):
        out += np.asarray(value, dtype=np.float64) * (weight / total)
    return out
