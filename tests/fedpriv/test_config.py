"""Invalid configuration fails early with a message that names the offending key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"num_clients": 0}, "num-clients"),
        ({"rounds": 0}, "rounds"),
        ({"target_epsilon": -1.0}, "target-epsilon"),
        ({"delta": 1.5}, "delta"),
        ({"max_grad_norm": 0.0}, "max-grad-norm"),
        ({"profile": "satellite"}, "profile"),
        ({"num_clients": 3, "clients_per_round": 5}, "clients-per-round"),
        ({"lora_targets": " , "}, "lora-targets"),
        ({"rounds": 2.5}, "rounds"),
        ({"server_learning_rate": 0.0}, "server-learning-rate"),
        ({"server_learning_rate": float("nan")}, "server-learning-rate"),
        ({"strategy": "hetlora", "hetlora_method": "svd", "server_learning_rate": 2.0}, "server-learning-rate"),
        ({"profile": "phone", "trim_beta": 0.1}, "trim-beta"),  # secure aggregation is the phone's default
        ({"trim_beta": 0.1, "secure_aggregation": True}, "trim-beta"),
        ({"strategy": "hetlora", "hetlora_method": "svd", "secure_aggregation": True}, "hetlora-method"),
        ({"secure_aggregation_range": -1.0}, "secure-aggregation-range"),
    ],
)
def test_invalid_values_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig(**overrides).validated()
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}:")


def test_secure_aggregation_is_on_by_default_for_phones_and_can_be_switched_either_way() -> None:
    assert RunConfig(profile="phone").validated().secure_aggregation_on
    assert not RunConfig(profile="hospital").validated().secure_aggregation_on
    assert not RunConfig(profile="phone", secure_aggregation=False).validated().secure_aggregation_on
    assert RunConfig(profile="hospital", secure_aggregation=True).validated().secure_aggregation_on
    # Flower's run config has no None: "auto" (or "") is the profile's default, true/false override it.
    assert RunConfig.from_flower({"profile": "phone", "secure-aggregation": "auto"}).secure_aggregation is None
    assert RunConfig.from_flower({"profile": "phone", "secure-aggregation": False}).secure_aggregation is False
    assert RunConfig.from_flower({"secure-aggregation": "true"}).secure_aggregation is True
    # A phone run that needs plaintext updates says how to get them.
    with pytest.raises(ConfigError, match="no-secure-aggregation"):
        RunConfig(profile="phone", trim_beta=0.1).validated()
    assert RunConfig(profile="phone", trim_beta=0.1, secure_aggregation=False).validated().trim_beta == 0.1


def test_unknown_flower_key_is_rejected_not_ignored() -> None:
    with pytest.raises(ConfigError, match="num-rounds"):
        RunConfig.from_flower({"num-rounds": 3})


def test_flower_round_trip_preserves_every_value() -> None:
    config = RunConfig(num_clients=5, clients_per_round=2, target_epsilon=4.0, dp="both", model="default").validated()
    assert RunConfig.from_flower(config.to_flower()) == config


@pytest.mark.parametrize(
    ("flags", "key"),
    [
        (["--num-clients", "0"], "num-clients"),
        (["--target-epsilon", "-2"], "target-epsilon"),
        (["--model", "/nonexistent/model/dir"], "model"),
        (["--data", "/nonexistent/data/dir"], "data-dir"),
        (["--server-learning-rate", "-1"], "server-learning-rate"),
    ],
)
def test_cli_rejects_bad_config_before_starting(tmp_path, flags: list[str], key: str) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fedpriv.cli", "simulate", "--out", str(out), *flags],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"error: {key}:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir()), "nothing may be written for an invalid config"
