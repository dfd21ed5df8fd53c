"""The two deployment profiles: the run config `flwr run` starts a real federation with.

- `hospital` (cross-silo): a few reliable sites, every one trains and evaluates in every round, and
  each protects its patients' records (record-level DP-SGD on the device, a budget of ε = 8 for what
  leaves it: `dp-scope uploads`, so the personalization that stays on the device trains without noise).
- `phone` (cross-device): many phones, a sample of them trains each round, the server protects each
  user (client-level DP-FedAvg), and a round needs only a minimum of replies within a timeout, so
  phones that drop out do not stall it.

`clients-per-round`, `min-train-nodes`, `min-evaluate-nodes` and `round-timeout` are the server's
keys for who takes part, how many replies a round needs and how long it waits for them
(server/participation.py, which has defaults per profile); the profiles set them explicitly, so
commands.txt shows the operator every knob.
"""

from __future__ import annotations

import math
from collections.abc import Callable

RunConfigValues = dict[str, bool | int | float | str]


def hospital(nodes: int, rounds: int) -> RunConfigValues:
    return {
        "profile": "hospital", "num-clients": nodes, "rounds": rounds,
        "dp": "record", "target-epsilon": 8.0, "delta": 1e-5, "dp-scope": "uploads", "finetune-epochs": 2,
        # All of them, every round: a hospital that does not answer is an outage, not a dropout.
        "min-train-nodes": nodes, "min-evaluate-nodes": nodes, "round-timeout": 3600,
    }


def phone(nodes: int, rounds: int) -> RunConfigValues:
    sampled = max(2, math.ceil(nodes / 2))
    return {
        "profile": "phone", "num-clients": nodes, "rounds": rounds, "clients-per-round": min(sampled, nodes),
        "dp": "client", "client-target-epsilon": 8.0, "delta": 1e-5, "dp-scope": "uploads",
        # A round counts once most of the sampled phones replied; the rest may be off or out of signal.
        "min-train-nodes": max(1, math.ceil(0.6 * min(sampled, nodes))), "min-evaluate-nodes": max(1, math.ceil(0.6 * nodes)),
        "round-timeout": 600,
    }


PROFILES: dict[str, Callable[[int, int], RunConfigValues]] = {"hospital": hospital, "phone": phone}
DEFAULT_ROUNDS = {"hospital": 5, "phone": 10}


def run_config(profile: str, nodes: int, rounds: int | None = None, **overrides: bool | int | float | str) -> RunConfigValues:
    """The profile's run config for `nodes` SuperNodes, with `overrides` (run-config keys, dashes)."""
    values = PROFILES[profile](nodes, rounds or DEFAULT_ROUNDS[profile])
    values.update(overrides)
    return values
