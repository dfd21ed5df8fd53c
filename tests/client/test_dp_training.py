"""σ calibration (`noise_multiplier_for`): the σ that spends the target ε over the planned steps,
computed once per input (`calibrated_noise_multiplier` is cached) and used as it is by the training."""

from __future__ import annotations

import dataclasses
import math

from opacus.accountants.utils import get_noise_multiplier

from client.dp_training import calibrated_noise_multiplier, encode, noise_multiplier_for, planned_dp_steps, sample_rate_for, train_locally
from client.privacy_ledger import PrivacyLedger
from fedpriv.config import RunConfig
from fedpriv.modeling import load_tokenizer
from simulations.synthetic import generate_federation


def _config(**overrides) -> RunConfig:
    values = dict(dp="record", target_epsilon=4.0, rounds=2, local_epochs=1, finetune_epochs=1, batch_size=8, max_seq_len=24,
                  learning_rate=1e-2, accountant="rdp", seed=0, dp_scope="all")
    values.update(overrides)
    return RunConfig(**values).validated()


def test_the_calibrated_sigma_is_the_accountants_for_the_planned_steps():
    config, n = _config(), 40
    expected = get_noise_multiplier(target_epsilon=4.0, target_delta=config.delta, sample_rate=sample_rate_for(n, 8),
                                    steps=planned_dp_steps(config, n), accountant="rdp")
    assert noise_multiplier_for(config, n) == expected
    assert noise_multiplier_for(_config(target_epsilon=0.0, noise_multiplier=1.7), n) == 1.7  # no target: the configured σ


def test_calibration_runs_once_per_input_and_never_answers_for_another():
    calibrated_noise_multiplier.cache_clear()
    config, n = _config(), 40
    sigma = noise_multiplier_for(config, n)
    assert calibrated_noise_multiplier.cache_info().misses == 1
    # Settings σ does not depend on (strategy, learning rate, output folder): the cached σ, not a new search.
    same = dataclasses.replace(config, strategy="fedsa", learning_rate=0.5, out="elsewhere")
    assert noise_multiplier_for(same, n) == sigma
    info = calibrated_noise_multiplier.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    # Anything it does depend on is a new search with its own answer.
    assert noise_multiplier_for(_config(target_epsilon=8.0), n) < sigma  # a larger budget needs less noise
    assert noise_multiplier_for(config, 80) < sigma  # more records: a lower sample rate, which amplifies more than the extra steps cost
    assert noise_multiplier_for(_config(dp_scope="uploads"), n) < sigma  # the fine-tuning is not charged
    assert calibrated_noise_multiplier.cache_info().misses == 4


def test_every_round_trains_with_the_calibrated_sigma_and_stays_within_the_budget(models):
    texts = next(iter(generate_federation("hospital", 1, 24, seed=0).values()))
    config = _config(finetune_epochs=0)
    train = encode(load_tokenizer(config.model), texts, config.max_seq_len)
    calibrated_noise_multiplier.cache_clear()
    ledger = PrivacyLedger(accountant=config.accountant)
    model = models.lora_model(config)
    outcomes = [train_locally(model, train, config, ledger, seed=r) for r in range(config.rounds)]
    assert calibrated_noise_multiplier.cache_info().misses == 1  # the second round reused the first round's σ
    assert all(o.noise_multiplier == noise_multiplier_for(config, len(train)) for o in outcomes)
    assert {sigma for sigma, _, _ in ledger.history} == {outcomes[0].noise_multiplier}  # what the ledger accounts for
    spent = ledger.epsilon(config.delta)
    assert 0.9 * config.target_epsilon < spent <= config.target_epsilon + 1e-9
    assert ledger.steps == config.rounds * math.ceil(len(train) / config.batch_size)
