"""compare_strategies gives the server's step on the averaged update (`dp_server_learning_rate`)
to the DP rows only. That the run config reaches the strategy is tested in
tests/server/test_server_app.py; what the step does to the aggregate in tests/strategies/test_base.py
and test_client_dp.py."""

from __future__ import annotations

import dataclasses

from simulations.studies import compare_strategies as cs


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
