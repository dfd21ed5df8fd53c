"""simulations.studies.comparison.reuse: which settings and machines make earlier results reusable."""

from __future__ import annotations

import dataclasses

from simulations.studies.comparison.formatting import json_ready
from simulations.studies.comparison.reuse import (
    DP_ONLY_FIELDS,
    describe_differences,
    differing_settings,
    environment_differences,
    machine_info,
    model_info,
    same_local_only_training,
)
from simulations.studies.comparison.settings import Settings


def test_results_made_before_the_scope_was_recorded_count_as_all():
    wanted = json_ready(dataclasses.asdict(Settings()))
    before = {k: v for k, v in wanted.items() if k != "dp_scope"}
    assert differing_settings(before, wanted) == []
    uploads = {**wanted, "dp_scope": "uploads"}
    assert differing_settings(before, uploads) == ["dp_scope"]
    assert describe_differences(before, uploads, ["dp_scope"]) == 'dp_scope "all" there, "uploads" here'
    # The no-DP rows do not depend on it: --no-dp-from may take them across scopes.
    assert differing_settings(before, uploads, DP_ONLY_FIELDS) == []


def test_results_made_before_the_server_step_was_recorded_count_as_one():
    wanted = json_ready(dataclasses.asdict(Settings()))
    before = {k: v for k, v in wanted.items() if k != "dp_server_learning_rate"}
    assert differing_settings(before, wanted) == []
    stepped = {**wanted, "dp_server_learning_rate": 4.0}
    assert differing_settings(before, stepped) == ["dp_server_learning_rate"]
    assert differing_settings(before, stepped, DP_ONLY_FIELDS) == []  # no-DP rows may be reused across it


def test_local_only_is_taken_from_the_no_dp_row_only_when_it_trains_the_same(tmp_path):
    settings = Settings(dp_scope="uploads", dp_server_learning_rate=2.0)
    def config(s, epsilon):
        return s.run_config("phone", epsilon, "fedavg", str(tmp_path), "")
    without_dp = config(settings, None)
    assert same_local_only_training(without_dp, config(settings, 8.0))  # never leaves the device: the same model
    assert not same_local_only_training(without_dp, config(dataclasses.replace(settings, dp_scope="all"), 8.0))  # DP-SGD
    other_rate = dataclasses.replace(settings, learning_rate=settings.learning_rate / 2)
    assert not same_local_only_training(without_dp, config(other_rate, 8.0))
    assert not same_local_only_training(config(dataclasses.replace(settings, dp_scope="all"), 8.0), config(settings, 8.0))


def test_another_processor_or_cpu_capability_is_another_machine():
    here = machine_info()
    same = {"machine": here, "model": model_info("default")}
    assert environment_differences(same, "default") == []
    # Same libraries and model, another processor: its float kernels round differently.
    intel = {**same, "machine": {**here, "processor": "Intel(R) Xeon(R) Processor"}}
    assert environment_differences(intel, "default") == [f"processor Intel(R) Xeon(R) Processor there, {here['processor']} here"]
    narrower = {**same, "machine": {**here, "cpu_capability": "NO AVX"}}
    assert environment_differences(narrower, "default") == [f"cpu capability NO AVX there, {here['cpu_capability']} here"]
    # Results from before the capability was recorded: the processor name stands for it.
    before = {**same, "machine": {k: v for k, v in here.items() if k != "cpu_capability"}}
    assert environment_differences(before, "default") == []
    assert environment_differences({**before, "machine": {**before["machine"], "processor": None}}, "default") == [
        f"processor not recorded there, {here['processor']} here"]
