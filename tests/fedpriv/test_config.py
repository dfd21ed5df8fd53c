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
    ],
)
def test_invalid_values_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        RunConfig(**overrides).validated()
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}:")


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
