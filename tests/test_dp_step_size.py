"""The DP step-size rule (`dp-step-size`): under record-level DP-SGD AdamW's step is
learning-rate × min(1, 1/σ), because Adam moves every coordinate about one step per noisy update."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from client.dp_training import dp_learning_rate, encode, train_locally
from client.privacy_ledger import PrivacyLedger
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.modeling import adapter_state, build_lora_model, load_tokenizer
from simulations.synthetic import generate_federation


def _config(**overrides) -> RunConfig:
    values = dict(dp="record", noise_multiplier=4.0, target_epsilon=0.0, learning_rate=0.02, batch_size=16, local_epochs=1,
                  max_seq_len=24, max_grad_norm=0.3, accountant="rdp", seed=0)
    values.update(overrides)
    return RunConfig(**values).validated()


def test_the_step_shrinks_as_one_over_sigma_above_one_and_is_unchanged_otherwise():
    config = _config()
    assert dp_learning_rate(config, 4.0) == pytest.approx(0.005)
    assert dp_learning_rate(config, 7.27) == pytest.approx(0.02 / 7.27)
    assert dp_learning_rate(config, 1.0) == dp_learning_rate(config, 0.5) == 0.02  # noise no larger than the clip: as given
    assert dp_learning_rate(_config(dp_step_size="fixed"), 4.0) == 0.02
    with pytest.raises(ConfigError, match="dp-step-size"):
        _config(dp_step_size="sqrt")


def _one_dp_step(config: RunConfig) -> tuple[torch.Tensor, float]:
    """Every LoRA coordinate's move in one DP-SGD step from the initial adapter, and the step size reported."""
    texts = next(iter(generate_federation("hospital", num_clients=1, records_per_client=16, seed=5).values()))
    train_set = encode(load_tokenizer(config.model), texts, config.max_seq_len)  # 16 records, batch 16: one step
    model = build_lora_model(config)
    before = adapter_state(model)
    outcome = train_locally(model, train_set, config, PrivacyLedger(accountant=config.accountant), seed=0)
    assert outcome.round_steps == 1
    after = adapter_state(model)
    return torch.cat([(after[k] - before[k]).abs().flatten() for k in before]), outcome.learning_rate


@pytest.mark.parametrize("rule, expected", [("inverse-sigma", 0.02 / 4.0), ("fixed", 0.02)])
def test_a_noisy_adam_step_moves_each_coordinate_by_the_step_size_the_rule_gives(rule: str, expected: float):
    # Adam's first step is lr · g / |g| per coordinate: with DP noise on every coordinate (A's gradient
    # is zero while B is, so A moves by noise alone), each one moves by the step size, whatever the signal.
    moves, reported = _one_dp_step(_config(dp_step_size=rule))
    assert reported == pytest.approx(expected)
    assert float(moves.max()) <= expected * 1.001
    assert float(moves.median()) >= expected * 0.99


def test_training_without_dp_keeps_the_learning_rate():
    config = _config(dp="none")
    _, reported = _one_dp_step(dataclasses.replace(config))
    assert reported == 0.02
