"""simulations.studies.baselines: local-only trains like a federated client (same σ, same epochs,
never past the target ε; without DP the same early stopping, and then the very model the
personalization trains from scratch), and global-only evaluates the global adapter alone."""

from __future__ import annotations

import math

import pytest
import torch

from client.dp_training import evaluate, noise_multiplier_for, sample_rate_for, train_locally
from client.personalize import total_local_epochs, train_from_scratch_selected, validation_split
from fedpriv.adapter_parts import split_adapter
from fedpriv.config import RunConfig
from fedpriv.errors import PrivacyBudgetExhausted
from fedpriv.modeling import adapter_state
from simulations.studies.baselines import evaluate_adapter, train_local_only
from tests.fakes import encoded_client

MODEL = "default"


def _config(**overrides) -> RunConfig:
    values = dict(model=MODEL, rounds=1, local_epochs=1, finetune_epochs=1, batch_size=8, max_seq_len=24, learning_rate=1e-2,
                  dp="record", target_epsilon=2.0, accountant="rdp", seed=0, dp_scope="all")
    values.update(overrides)
    return RunConfig(**values).validated()


def _no_dp(**overrides) -> RunConfig:
    return _config(**{"dp": "none", "target_epsilon": 0.0, "finetune_epochs": 2, "learning_rate": 2e-2, **overrides})


@pytest.fixture(scope="module")
def hospital():
    return encoded_client("hospital", 30, 0.2, seed=0)


@pytest.fixture(scope="module")
def phone():
    return encoded_client("phone", 60, 0.5, seed=3)


# ---- under record-level DP --------------------------------------------------------------------------


def test_local_only_spends_at_most_the_target_epsilon(models, hospital):
    client_id, train, held_out = hospital
    config = _config()
    result, ledger, outcome = train_local_only(models, config, client_id, train, held_out)
    n = len(train)
    # Same σ as a federated client of this config, same number of steps: rounds*local_epochs + finetune_epochs epochs.
    assert outcome.noise_multiplier == pytest.approx(noise_multiplier_for(config, n))
    assert ledger.steps == total_local_epochs(config) * math.ceil(n / config.batch_size) == result.steps
    assert all(q == pytest.approx(sample_rate_for(n, config.batch_size)) for _, q, _ in ledger.history)
    assert result.epsilon <= config.target_epsilon + 1e-9
    assert result.epsilon > 0.9 * config.target_epsilon  # calibrated to spend (nearly) all of it, not a loose bound
    assert math.isfinite(result.perplexity)
    # The budget is spent: one more epoch on this ledger is refused.
    with pytest.raises(PrivacyBudgetExhausted):
        train_locally(models.lora_model(config), train, config, ledger, seed=1, epochs=1)


def test_record_dp_keeps_the_fixed_protocol(models, phone):
    client_id, train, held_out = phone
    config = _no_dp(dp="record", target_epsilon=4.0)
    result, ledger, _ = train_local_only(models, config, client_id, train, held_out)
    assert result.epochs == total_local_epochs(config) and ledger is not None
    assert result.steps == total_local_epochs(config) * math.ceil(len(train) / config.batch_size)


def test_local_only_under_uploads_is_the_model_trained_without_dp(models, hospital):
    client_id, train, held_out = hospital
    uploads, _, _ = train_local_only(models, _config(target_epsilon=8.0, dp_scope="uploads"), client_id, train, held_out)
    plain, _, _ = train_local_only(models, _config(dp="none", target_epsilon=0.0), client_id, train, held_out)
    charged, ledger, _ = train_local_only(models, _config(target_epsilon=8.0), client_id, train, held_out)
    assert uploads.epsilon is None and uploads.perplexity == plain.perplexity and uploads.epochs == plain.epochs
    assert charged.epsilon is not None and ledger.steps > 0 and charged.perplexity != plain.perplexity


# ---- without DP --------------------------------------------------------------------------------------


def test_local_only_without_dp_has_no_ledger(models, hospital):
    client_id, train, held_out = hospital
    result, ledger, outcome = train_local_only(models, _config(dp="none", target_epsilon=0.0, validation_fraction=0.0), client_id, train, held_out)
    assert ledger is None and result.epsilon is None and outcome.noise_multiplier == 0.0


def test_local_only_without_dp_selects_up_to_the_same_cap(models, phone):
    client_id, train, held_out = phone
    config = _no_dp()
    result, ledger, stopped = train_local_only(models, config, client_id, train, held_out)
    assert ledger is None and result.epsilon is None
    assert result.epochs == stopped.epochs and 0 <= stopped.epochs <= stopped.epochs_run <= total_local_epochs(config)
    fixed, _, outcome = train_local_only(models, _no_dp(validation_fraction=0.0), client_id, train, held_out)
    assert fixed.epochs == total_local_epochs(config) and outcome.noise_multiplier == 0.0


def test_local_only_without_dp_is_the_personalizations_from_scratch_model(models, phone):
    """Without DP, local-only is the adapter personalization trains from scratch (same seed, same fit
    and validation slices, same early stopping): its outcome can stand in for that training
    (`personalize(from_scratch=...)`, which the comparison uses to skip training it twice)."""
    client_id, train, held_out = phone
    config = _no_dp()
    local_only, _, outcome = train_local_only(models, config, client_id, train, held_out)
    model, stopped = train_from_scratch_selected(models, config, client_id, *validation_split(config, client_id, train))
    assert (outcome.epochs, outcome.epochs_run, outcome.validation_loss) == (stopped.epochs, stopped.epochs_run, stopped.validation_loss)
    assert outcome.state.keys() == stopped.state.keys() and all(torch.equal(outcome.state[k], stopped.state[k]) for k in stopped.state)
    assert local_only.perplexity == evaluate(model, held_out)[1] and local_only.epochs == stopped.epochs


# ---- global-only ---------------------------------------------------------------------------------------


def test_global_only_of_fedsa_is_the_base_model_and_its_private_part_changes_it(models, hospital):
    """fedsa's global adapter is lora_A only: with B at its zero init it predicts as the base model."""
    _, train, held_out = hospital
    config = _config(dp="none", target_epsilon=0.0, validation_fraction=0.0)
    model = models.lora_model(config)
    train_locally(model, train, config, None, seed=0, epochs=1)
    shared, private = split_adapter(adapter_state(model), "fedsa")
    base = evaluate_adapter(models, config, {}, held_out)
    assert evaluate_adapter(models, config, shared, held_out).perplexity == pytest.approx(base.perplexity)
    assert evaluate_adapter(models, config, {**shared, **private}, held_out).perplexity != pytest.approx(base.perplexity, rel=1e-3)
