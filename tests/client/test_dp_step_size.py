"""The DP step-size rule (`dp-step-size`): under record-level DP-SGD AdamW's step is
learning-rate × min(1, 1/σ), because Adam moves every coordinate about one step per noisy update,
and (`capped`, the default) at most DP_WALK_RADIUS/√T, so the walk over T steps stays bounded."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from client.dp_training import dp_learning_rate, encode, planned_dp_steps, train_locally
from client.privacy_ledger import PrivacyLedger
from fedpriv.config import DP_WALK_RADIUS, RunConfig
from fedpriv.errors import ConfigError
from fedpriv.modeling import adapter_state, build_lora_model, load_tokenizer
from simulations.synthetic import generate_federation


def _config(**overrides) -> RunConfig:
    values = dict(dp="record", noise_multiplier=4.0, target_epsilon=0.0, learning_rate=0.02, batch_size=16, local_epochs=1,
                  max_seq_len=24, max_grad_norm=0.3, accountant="rdp", seed=0, dp_scope="all")
    values.update(overrides)
    return RunConfig(**values).validated()


@pytest.mark.parametrize("rule", ["capped", "inverse-sigma"])
def test_the_step_shrinks_as_one_over_sigma_above_one_and_is_unchanged_otherwise(rule: str):
    config = _config(dp_step_size=rule)
    few = 75  # 80 records, batch 16, 15 epochs: the cap (0.0173) is above every step below
    assert dp_learning_rate(config, 4.0, few) == pytest.approx(0.005)
    assert dp_learning_rate(config, 7.27, few) == pytest.approx(0.02 / 7.27)
    assert dp_learning_rate(config, 1.39, few) == pytest.approx(0.02 / 1.39)
    as_given = 0.02 if rule == "inverse-sigma" else DP_WALK_RADIUS / few ** 0.5  # noise no larger than the clip
    assert dp_learning_rate(config, 1.0, few) == dp_learning_rate(config, 0.5, few) == pytest.approx(as_given)
    assert dp_learning_rate(_config(dp_step_size="fixed"), 4.0, few) == 0.02
    with pytest.raises(ConfigError, match="dp-step-size"):
        _config(dp_step_size="sqrt")


def test_capped_keeps_the_walk_over_all_planned_steps_within_the_radius():
    capped, uncapped = _config(), _config(dp_step_size="inverse-sigma")
    many = 225  # 240 records, batch 16, 15 epochs
    assert dp_learning_rate(capped, 0.98, many) == pytest.approx(DP_WALK_RADIUS / 15)
    assert dp_learning_rate(uncapped, 0.98, many) == 0.02
    for steps in (10, 75, 225, 5000):
        for sigma in (0.5, 1.4, 7.0):
            step = dp_learning_rate(capped, sigma, steps)
            assert step * steps ** 0.5 <= DP_WALK_RADIUS + 1e-12
            assert step == pytest.approx(min(dp_learning_rate(uncapped, sigma, steps), DP_WALK_RADIUS / steps ** 0.5))
    # T is what the budget is calibrated for: every round plus the fine-tuning
    assert planned_dp_steps(_config(rounds=5, local_epochs=2, finetune_epochs=5), 80) == 75


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


@pytest.mark.parametrize("rule, rounds, expected", [
    ("capped", 1, 0.02 / 4.0), ("inverse-sigma", 1, 0.02 / 4.0), ("fixed", 1, 0.02),
    ("capped", 3000, DP_WALK_RADIUS / (3000 + RunConfig().finetune_epochs) ** 0.5),  # a long plan: the cap binds
])
def test_a_noisy_adam_step_moves_each_coordinate_by_the_step_size_the_rule_gives(rule: str, rounds: int, expected: float):
    # Adam's first step is lr · g / |g| per coordinate: with DP noise on every coordinate (A's gradient
    # is zero while B is, so A moves by noise alone), each one moves by the step size, whatever the signal.
    moves, reported = _one_dp_step(_config(dp_step_size=rule, rounds=rounds))
    assert reported == pytest.approx(expected)
    assert float(moves.max()) <= expected * 1.001
    assert float(moves.median()) >= expected * 0.99


def test_training_without_dp_keeps_the_learning_rate():
    config = _config(dp="none")
    _, reported = _one_dp_step(dataclasses.replace(config))
    assert reported == 0.02
