"""`dp-scope`: what record-level ε covers. `all` (the default) charges every training on the
device's records; `uploads` charges only what leaves the device, so the federation gets the whole
budget while local-only and the on-device fine-tuning train as without DP (joint DP)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from client.dp_training import encode, noise_multiplier_for, planned_dp_steps
from simulations.studies.baselines import train_local_only
from fedpriv.config import RunConfig
from fedpriv.data import split_records
from fedpriv.errors import ConfigError
from fedpriv.modeling import load_tokenizer
from simulations.studies import compare_strategies as cs
from simulations.synthetic import generate_federation


def _config(**overrides) -> RunConfig:
    values = dict(dp="record", target_epsilon=8.0, rounds=5, local_epochs=2, finetune_epochs=5, batch_size=16,
                  max_seq_len=24, accountant="rdp", seed=0)
    values.update(overrides)
    return RunConfig(**values).validated()


def test_a_bad_scope_is_named():
    with pytest.raises(ConfigError, match="dp-scope: must be one of all, uploads, got 'device'"):
        _config(dp_scope="device")


def test_on_device_training_keeps_record_dp_only_when_epsilon_covers_it():
    everything, uploads = _config(), _config(dp_scope="uploads")
    assert everything.on_device_dp and everything.on_device() is everything
    assert not uploads.on_device_dp and uploads.record_dp  # the federation's DP-SGD is unchanged
    assert uploads.on_device().dp_mode == "none" and not uploads.on_device().record_dp
    assert _config(dp="both", dp_scope="uploads").on_device().dp_mode == "client"  # client-level DP concerns what is sent
    assert _config(dp="none", dp_scope="uploads").on_device_dp is False


def test_under_uploads_the_rounds_alone_spend_the_budget():
    everything, uploads = _config(), _config(dp_scope="uploads")
    batches = math.ceil(80 / 16)
    assert planned_dp_steps(everything, 80) == (5 * 2 + 5) * batches
    assert planned_dp_steps(uploads, 80) == 5 * 2 * batches
    # Fewer steps for the same ε: less noise on every update that leaves the device.
    assert noise_multiplier_for(uploads, 80) < noise_multiplier_for(everything, 80)
    assert noise_multiplier_for(uploads, 80) == pytest.approx(noise_multiplier_for(_config(finetune_epochs=0), 80))


def test_local_only_under_uploads_is_the_model_trained_without_dp(models):
    texts = generate_federation("hospital", 1, 30, seed=0)
    client_id, records = next(iter(texts.items()))
    split = split_records(client_id, records, 0.2, 0)
    tokenizer = load_tokenizer("default")
    train, held_out = encode(tokenizer, split.train, 24), encode(tokenizer, split.held_out, 24)
    small = dict(rounds=1, local_epochs=1, finetune_epochs=1)
    uploads, _, _ = train_local_only(models, _config(dp_scope="uploads", **small), client_id, train, held_out)
    plain, _, _ = train_local_only(models, _config(dp="none", target_epsilon=0.0, **small), client_id, train, held_out)
    charged, ledger, _ = train_local_only(models, _config(**small), client_id, train, held_out)
    assert uploads.epsilon is None and uploads.perplexity == plain.perplexity and uploads.epochs == plain.epochs
    assert charged.epsilon is not None and ledger.steps > 0 and charged.perplexity != plain.perplexity


def test_results_made_before_the_scope_was_recorded_count_as_all():
    wanted = cs._json_ready(dataclasses.asdict(cs.Settings()))
    before = {k: v for k, v in wanted.items() if k != "dp_scope"}
    assert cs.differing_settings(before, wanted) == []
    uploads = {**wanted, "dp_scope": "uploads"}
    assert cs.differing_settings(before, uploads) == ["dp_scope"]
    assert cs.describe_differences(before, uploads, ["dp_scope"]) == 'dp_scope "all" there, "uploads" here'
    # The no-DP rows do not depend on it: --no-dp-from may take them across scopes.
    assert cs.differing_settings(before, uploads, cs.DP_ONLY_FIELDS) == []


def test_compare_strategies_takes_local_only_from_the_no_dp_row_only_when_it_trains_the_same(tmp_path):
    settings = cs.Settings(dp_scope="uploads", dp_server_learning_rate=2.0)
    def config(s, epsilon):
        return s.run_config("phone", epsilon, "fedavg", str(tmp_path), "")
    without_dp = config(settings, None)
    assert cs.same_local_only_training(without_dp, config(settings, 8.0))  # never leaves the device: the same model
    assert not cs.same_local_only_training(without_dp, config(dataclasses.replace(settings, dp_scope="all"), 8.0))  # DP-SGD
    other_rate = dataclasses.replace(settings, learning_rate=settings.learning_rate / 2)
    assert not cs.same_local_only_training(without_dp, config(other_rate, 8.0))
    assert not cs.same_local_only_training(config(dataclasses.replace(settings, dp_scope="all"), 8.0), config(settings, 8.0))
