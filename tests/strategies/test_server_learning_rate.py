"""The server's step on the averaged update (`server-learning-rate`) reaches the strategy the run
builds, and compare_strategies gives it to the DP rows only. What it does to the aggregate is
tested with the strategies (tests/strategies/test_aggregation.py, test_client_dp.py)."""

from __future__ import annotations

import dataclasses

from fedpriv.config import RunConfig
from server.server_app import make_strategy
from simulations.studies import compare_strategies as cs


def test_the_run_config_reaches_the_strategy_with_and_without_client_dp():
    plain = make_strategy(RunConfig(strategy="fedavg", dp="none", server_learning_rate=2.5).validated(), 4)
    assert plain.server_learning_rate == 2.5
    wrapped = make_strategy(RunConfig(strategy="ffa", dp="client", server_learning_rate=2.5).validated(), 4)
    assert wrapped.strategy.server_learning_rate == 2.5  # ClientLevelDP applies through its inner strategy
    assert make_strategy(RunConfig(strategy="fedavg", dp="none").validated(), 4).server_learning_rate == 1.0


def test_compare_strategies_steps_the_dp_rows_only(tmp_path):
    settings = cs.Settings(dp_server_learning_rate=4.0)
    assert settings.run_config("phone", None, "fedavg", str(tmp_path), "o").server_learning_rate == 1.0
    assert settings.run_config("phone", 8.0, "fedavg", str(tmp_path), "o").server_learning_rate == 4.0
    parser = cs.build_parser()
    argv = ["--dp-server-learning-rate", "3"]
    assert cs.settings_from_args(parser.parse_args(argv), argv).dp_server_learning_rate == 3.0


def test_results_made_before_it_was_recorded_count_as_one_and_no_dp_rows_may_be_reused():
    wanted = cs._json_ready(dataclasses.asdict(cs.Settings()))
    before = {k: v for k, v in wanted.items() if k != "dp_server_learning_rate"}
    assert cs.differing_settings(before, wanted) == []
    stepped = {**wanted, "dp_server_learning_rate": 4.0}
    assert cs.differing_settings(before, stepped) == ["dp_server_learning_rate"]
    assert cs.differing_settings(before, stepped, cs.DP_ONLY_FIELDS) == []
