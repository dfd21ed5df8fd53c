"""Who takes part in a round, how many replies it needs, and how long the server waits.

The run config's `clients-per-round`, `min-train-nodes`, `min-evaluate-nodes` and `round-timeout`
default (None, or 0: Flower's run config has no None) to the profile's:

* `hospital` (cross-silo, few reliable nodes): every node every round; a round updates the global
  adapter only if every sampled hospital's reply is valid, and evaluates only if all replied.
  The server waits for all of them to connect, and up to an hour for a phase's replies.
* `phone` (cross-device, many nodes that come and go): a sample per round (a quarter of the
  fleet, at least `PHONE_MIN_SAMPLE`); three quarters of the sample must reply with a valid
  update (always fewer than the sample, so one dead phone does not cost the round); the round
  starts as soon as a sample's worth of phones is connected, and waits `PHONE_TIMEOUT` seconds.

A phase that gets fewer valid replies than its minimum keeps the previous global adapter (train)
or has no aggregate evaluation, the run record says why, and the run goes on. The timeout also
becomes each instruction's time to live, so a phone that comes back later does not train (and
spend ε) for a round the server has already closed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError

PHONE_SAMPLE_FRACTION = 0.25
PHONE_MIN_SAMPLE = 5
PHONE_REPLY_FRACTION = 0.75
PHONE_TIMEOUT = 600.0  # seconds
HOSPITAL_TIMEOUT = 3600.0  # Flower's own default for Strategy.start


@dataclass(frozen=True)
class Participation:
    clients_per_round: int  # nodes sampled for training each round
    min_train_nodes: int  # valid train replies a round needs to update the global adapter
    min_evaluate_nodes: int  # valid evaluate replies a round needs for its aggregate evaluation
    min_available_nodes: int  # connected nodes a round waits for before it samples
    round_timeout: float  # seconds the server waits for one phase's replies

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_participation(config: RunConfig, num_clients: int) -> Participation:
    """The run's participation: the config's values, the profile's defaults for the rest."""
    if config.clients_per_round and config.clients_per_round > num_clients:
        raise ConfigError("clients-per-round", f"{config.clients_per_round} is more than the {num_clients} clients")
    if config.profile == "phone":
        per_round = config.clients_per_round or min(num_clients, max(PHONE_MIN_SAMPLE, math.ceil(PHONE_SAMPLE_FRACTION * num_clients)))
        min_train = config.min_train_nodes or _below(per_round)
        min_evaluate = config.min_evaluate_nodes or _below(num_clients)
        min_available = per_round
        timeout = config.round_timeout or PHONE_TIMEOUT
    else:
        per_round = config.clients_per_round or num_clients
        min_train = config.min_train_nodes or per_round
        min_evaluate = config.min_evaluate_nodes or num_clients
        min_available = num_clients
        timeout = config.round_timeout or HOSPITAL_TIMEOUT
    if min_train > per_round:
        raise ConfigError("min-train-nodes", f"{min_train} is more than the {per_round} nodes sampled per round")
    if min_evaluate > num_clients:
        raise ConfigError("min-evaluate-nodes", f"{min_evaluate} is more than the {num_clients} clients")
    return Participation(per_round, min_train, min_evaluate, min_available, float(timeout))


def _below(sampled: int) -> int:
    """Three quarters of a sample, rounded up, but fewer than the sample whenever it has two or more."""
    return max(1, min(sampled - 1, math.ceil(PHONE_REPLY_FRACTION * sampled)))
