"""Building strategies by name: names, option keys, client-level DP wrapping, errors."""

from __future__ import annotations

import pytest

from fedpriv.errors import ConfigError
from strategies.client_dp import ClientLevelDP
from strategies.fedavg import FedAvgLora
from strategies.ffa import FFALora
from strategies.registry import STRATEGIES, build_strategy

pytestmark = pytest.mark.usefixtures("task_identity")


def test_registry_names_and_options():
    assert set(STRATEGIES) == {"fedavg", "ffa", "hetlora", "fedsa"}
    for name, cls in STRATEGIES.items():
        assert type(build_strategy(name)) is cls
    het = build_strategy("hetlora", **{"hetlora-profile-ranks": "phone=4,hospital=16", "hetlora-node-profiles": "3=phone",
                                       "hetlora-client-ranks": "7=8", "hetlora-method": "svd"})
    assert het.profile_ranks == {"phone": 4, "hospital": 16} and het.node_profiles == {3: "phone"}
    assert het.client_ranks == {7: 8} and het.method == "svd"
    with pytest.raises(ConfigError, match="ffa-a-seed"):
        build_strategy("fedavg", **{"ffa-a-seed": 3})
    with pytest.raises(ConfigError, match="strategy"):
        build_strategy("krum")
    dp = build_strategy("auto", **{"client-dp": True, "dp-clipping-norm": 1.0, "dp-noise-multiplier": 1.0,
                                   "dp-sample-rate": 0.1})
    assert isinstance(dp, ClientLevelDP) and isinstance(dp.strategy, FFALora)  # ffa is the default under DP
    assert type(build_strategy(None)) is FedAvgLora
    with pytest.raises(ConfigError, match="client-dp"):
        build_strategy("ffa", **{"dp-noise-multiplier": 1.0})
