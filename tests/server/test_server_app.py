"""The ServerApp's strategy factory: the run config reaches the strategy it builds."""

from __future__ import annotations

from fedpriv.config import RunConfig
from server.server_app import make_strategy


def test_the_run_config_reaches_the_strategy_with_and_without_client_dp():
    plain = make_strategy(RunConfig(strategy="fedavg", dp="none", server_learning_rate=2.5).validated(), 4)
    assert plain.server_learning_rate == 2.5
    wrapped = make_strategy(RunConfig(strategy="ffa", dp="client", server_learning_rate=2.5).validated(), 4)
    assert wrapped.strategy.server_learning_rate == 2.5  # ClientLevelDP applies through its inner strategy
    assert make_strategy(RunConfig(strategy="fedavg", dp="none").validated(), 4).server_learning_rate == 1.0
