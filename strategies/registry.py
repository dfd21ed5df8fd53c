"""Build a strategy by name: ``build_strategy(name, **options) -> flwr Strategy``.

Names: ``fedavg``, ``ffa``, ``hetlora``, ``fedsa`` (``auto``/``None``: ``ffa`` when client-level
DP is on, else ``fedavg``). Option keys may be written with ``-`` or ``_`` (``"trim-beta"`` ==
``trim_beta``); unknown keys raise :class:`fedpriv.errors.ConfigError` naming them.

Common options (every name): fraction-train, fraction-evaluate, min-train-nodes,
min-evaluate-nodes, min-available-nodes, weighted-by-key, required-metrics, require-dp-metrics,
max-num-examples, max-payload-bytes, norm-bound, trim-beta, secure-aggregation,
secure-aggregation-range, server-learning-rate, seed, min-train-replies, min-evaluate-replies. As in Flower,
``min-train-nodes`` / ``min-evaluate-nodes`` are the least number of nodes *sampled*;
``min-train-replies`` / ``min-evaluate-replies`` the valid replies a round needs to aggregate
(the run config's ``min-train-nodes`` / ``min-evaluate-nodes`` set these, server/participation.py).
ffa: ffa-a-seed, ffa-a-init, ffa-send-a. hetlora: hetlora-client-ranks, hetlora-profile-ranks,
hetlora-node-profiles, hetlora-default-rank, hetlora-rank-fn, hetlora-method, hetlora-pad-target,
hetlora-scale-alpha. Client-level DP (wraps the strategy in ``ClientLevelDP`` when
``client-dp=true``): dp-clipping-norm, dp-noise-multiplier, dp-target-epsilon, num-rounds,
dp-delta, dp-sampling, dp-sample-rate, dp-clients-per-round, dp-population, dp-max-epsilon,
dp-seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from logging import WARNING
from typing import Any

from flwr.common import log
from flwr.serverapp.strategy import Strategy

from fedpriv.errors import ConfigError
from strategies.base import LoraStrategy
from strategies.client_dp import ClientLevelDP
from strategies.fedavg import FedAvgLora
from strategies.fedsa import FedSALora
from strategies.ffa import FFALora
from strategies.hetlora import HetLora

STRATEGIES: dict[str, type[LoraStrategy]] = {
    "fedavg": FedAvgLora,
    "ffa": FFALora,
    "hetlora": HetLora,
    "fedsa": FedSALora,
}

COMMON_OPTIONS: dict[str, str] = {  # option key -> constructor argument
    "fraction_train": "fraction_train",
    "fraction_evaluate": "fraction_evaluate",
    "min_train_nodes": "min_train_nodes",
    "min_evaluate_nodes": "min_evaluate_nodes",
    "min_available_nodes": "min_available_nodes",
    "weighted_by_key": "weighted_by_key",
    "required_metrics": "required_metrics",
    "require_dp_metrics": "require_dp_metrics",
    "max_num_examples": "max_num_examples",
    "max_payload_bytes": "max_payload_bytes",
    "norm_bound": "norm_bound",
    "trim_beta": "trim_beta",
    "secure_aggregation": "secure_aggregation",
    "secure_aggregation_range": "secure_aggregation_range",
    "server_learning_rate": "server_learning_rate",
    "seed": "seed",
    "min_train_replies": "min_train_replies",
    "min_evaluate_replies": "min_evaluate_replies",
}
MODE_OPTIONS: dict[str, dict[str, str]] = {
    "fedavg": {},
    "fedsa": {},
    "ffa": {"ffa_a_seed": "a_seed", "ffa_a_init": "a_init", "ffa_send_a": "send_a"},
    "hetlora": {
        "hetlora_client_ranks": "client_ranks",
        "hetlora_profile_ranks": "profile_ranks",
        "hetlora_node_profiles": "node_profiles",
        "hetlora_default_rank": "default_rank",
        "hetlora_rank_fn": "rank_fn",
        "hetlora_method": "method",
        "hetlora_pad_target": "pad_target",
        "hetlora_scale_alpha": "scale_alpha",
    },
}
DP_OPTIONS: dict[str, str] = {
    "dp_clipping_norm": "clipping_norm",
    "dp_noise_multiplier": "noise_multiplier",
    "dp_target_epsilon": "target_epsilon",
    "num_rounds": "num_rounds",
    "dp_delta": "delta",
    "dp_sampling": "sampling",
    "dp_sample_rate": "sample_rate",
    "dp_clients_per_round": "clients_per_round",
    "dp_population": "population",
    "dp_max_epsilon": "max_epsilon",
    "dp_seed": "seed",
    "dp_noise_source": "noise_source",
}
_MAP_OPTIONS = {"hetlora_client_ranks", "hetlora_profile_ranks", "hetlora_node_profiles"}


def all_option_keys() -> set[str]:
    """Every accepted option key (underscore form), e.g. to filter a run config."""
    keys = set(COMMON_OPTIONS) | set(DP_OPTIONS) | {"client_dp"}
    for extra in MODE_OPTIONS.values():
        keys |= set(extra)
    return keys


def default_strategy_name(client_dp: bool) -> str:
    """FFA-LoRA when client-level DP is on (exact aggregation, linear noise), else FedAvg."""
    return "ffa" if client_dp else "fedavg"


def parse_map(key: str, value: Any, int_keys: bool = False, int_values: bool = True) -> dict[Any, Any]:
    """A dict, or a run-config string like ``"phone=4,hospital=16"`` / ``"12=phone;13=hospital"``."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, str):
        items = []
        for part in value.replace(";", ",").split(","):
            if not part.strip():
                continue
            if "=" not in part and ":" not in part:
                raise ConfigError(key.replace("_", "-"), f"expected name=value pairs, got {part!r}")
            name, _, val = part.replace(":", "=").partition("=")
            items.append((name.strip(), val.strip()))
    else:
        raise ConfigError(key.replace("_", "-"), f"expected a mapping or 'a=1,b=2', got {type(value).__name__}")
    out: dict[Any, Any] = {}
    for name, val in items:
        try:
            if int_keys or (isinstance(name, str) and name.lstrip("-").isdigit()):
                name = int(name)
            if int_values:
                val = int(val)
        except (TypeError, ValueError):
            raise ConfigError(key.replace("_", "-"), f"bad entry {name!r}={val!r}") from None
        out[name] = val if int_values else str(val)
    return out


def build_strategy(name: str | None, **options: Any) -> Strategy:
    """Build a fedpriv strategy by name (see the module docstring for option keys)."""
    opts = {str(k).replace("-", "_"): v for k, v in options.items()}
    client_dp = bool(opts.pop("client_dp", False))
    if name in (None, "", "auto"):
        name = default_strategy_name(client_dp)
    name = str(name).lower()
    if name not in STRATEGIES:
        raise ConfigError("strategy", f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    mode_options = MODE_OPTIONS[name]
    known = set(COMMON_OPTIONS) | set(mode_options) | set(DP_OPTIONS)
    unknown = sorted(k for k in opts if k not in known)
    if unknown:
        other_modes = [k for k in unknown if any(k in m for m in MODE_OPTIONS.values())]
        hint = f" (options of another strategy: {', '.join(other_modes)})" if other_modes else ""
        raise ConfigError(unknown[0].replace("_", "-"), f"unknown option(s) for strategy {name!r}: "
                          f"{', '.join(k.replace('_', '-') for k in unknown)}{hint}")
    dp_given = sorted(k for k in opts if k in DP_OPTIONS and k != "num_rounds")
    if dp_given and not client_dp:
        raise ConfigError(dp_given[0].replace("_", "-"), "client-level DP options given but client-dp is not true")

    kwargs: dict[str, Any] = {}
    for key, arg in {**COMMON_OPTIONS, **mode_options}.items():
        if key in opts:
            value = opts[key]
            if key in _MAP_OPTIONS and value is not None:
                value = parse_map(key, value, int_keys=key == "hetlora_node_profiles",
                                  int_values=key != "hetlora_node_profiles")
            if key == "required_metrics" and isinstance(value, str):
                value = tuple(v.strip() for v in value.split(",") if v.strip())
            kwargs[arg] = value
    strategy = STRATEGIES[name](**kwargs)
    if not client_dp:
        return strategy
    if name == "fedavg":
        log(WARNING, "client-dp with fedavg averages A and B separately (inexact, noise×noise term); "
            "ffa is recommended under DP")
    dp_kwargs = {arg: opts[key] for key, arg in DP_OPTIONS.items() if key in opts}
    if "clipping_norm" not in dp_kwargs:
        raise ConfigError("dp-clipping-norm", "client-dp needs a clipping norm")
    return ClientLevelDP(strategy, **dp_kwargs)
