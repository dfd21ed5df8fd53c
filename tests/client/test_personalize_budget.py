"""client.personalize under record-level DP: personalized = federated + what the device kept (fedsa:
its own lora_B) + fine-tuning paid from the device's ledger of the federation, never past the target ε."""

from __future__ import annotations

import math

import pytest

from client.device import DeviceFolder
from client.dp_training import evaluate, train_locally
from client.personalize import LEDGER_FILE, personalize
from client.privacy_ledger import PrivacyLedger
from fedpriv.adapter_parts import lora_role, merge_adapter, split_adapter
from fedpriv.config import RunConfig
from fedpriv.errors import DataError, PrivacyBudgetExhausted
from fedpriv.modeling import adapter_state, load_adapter_state
from tests.fakes import encoded_client

MODEL = "default"


def _config(**overrides) -> RunConfig:
    values = dict(
        model=MODEL, rounds=1, local_epochs=1, finetune_epochs=1, batch_size=8, max_seq_len=24, learning_rate=1e-2,
        dp="record", target_epsilon=2.0, accountant="rdp", seed=0, dp_scope="all",
    )
    values.update(overrides)
    return RunConfig(**values).validated()


@pytest.fixture(scope="module")
def client_data():
    return encoded_client("hospital", 30, 0.2, seed=0)


def _perplexity(models, config: RunConfig, state: dict, held_out) -> float:
    """Held-out perplexity of a fresh adapter with `state` loaded over it."""
    model = models.lora_model(config)
    load_adapter_state(model, merge_adapter(adapter_state(model), state))
    return evaluate(model, held_out)[1]


def _fake_fedsa_device(models, config, client_id, train, tmp_path):
    """What a fedsa federation leaves behind: a global adapter with lora_A only, the device's own
    non-zero lora_B, and a ledger holding `rounds` epochs of DP-SGD."""
    model = models.lora_model(config)
    ledger = PrivacyLedger(accountant=config.accountant)
    for r in range(config.rounds):
        train_locally(model, train, config, ledger, seed=r, epochs=config.local_epochs)
    shared, private = split_adapter(adapter_state(model), "fedsa")
    assert private and all(lora_role(k) == "B" for k in private) and any(v.abs().sum() > 0 for v in private.values())
    device_dir = tmp_path / "devices" / client_id
    device_dir.mkdir(parents=True)
    DeviceFolder(device_dir).save_private(private)  # sealed with the device key, as the ClientApp keeps it
    DeviceFolder(device_dir).save_ledger(ledger)
    return shared, private, ledger, device_dir


def test_personalized_uses_the_private_part_and_finetuning(models, client_data, tmp_path):
    client_id, train, held_out = client_data
    config = _config()
    shared, private, ledger, device_dir = _fake_fedsa_device(models, config, client_id, train, tmp_path)
    global_only = _perplexity(models, config, shared, held_out)
    with_private = _perplexity(models, config, {**shared, **private}, held_out)

    steps_before = ledger.steps
    result = personalize(models, config, "fedsa", client_id, shared, device_dir, train, held_out)
    before, after = result.federated, result.finetuned
    # Before fine-tuning it is exactly global A + the device's own B ...
    assert before.perplexity == pytest.approx(with_private, rel=1e-6)
    assert before.perplexity != pytest.approx(global_only, rel=1e-3)
    assert before.epsilon == pytest.approx(ledger.epsilon(config.delta))
    # ... then fine-tuning changed the model and was paid from the same (continued) ledger.
    assert after.perplexity != pytest.approx(before.perplexity, rel=1e-6)
    finetune_steps = config.finetune_epochs * math.ceil(len(train) / config.batch_size)
    assert after.steps == steps_before + finetune_steps
    assert before.epsilon < after.epsilon <= config.target_epsilon + 1e-9
    saved = PrivacyLedger.load(device_dir / LEDGER_FILE, config.accountant)
    assert saved.steps == after.steps  # the device's ledger continues
    # The interpolation mixes the two models' predictions: no extra steps or ε, and (Jensen) a loss
    # below the λ-weighted average of the two losses, since fine-tuning changed the predictions.
    mixed, weight = result.interpolated, result.global_weight
    assert (mixed.epsilon, mixed.steps) == (after.epsilon, after.steps)
    assert mixed.loss < weight * before.loss + (1 - weight) * after.loss

    # The budget is now spent: personalizing again is refused, never silently over budget.
    with pytest.raises(PrivacyBudgetExhausted):
        personalize(models, config, "fedsa", client_id, shared, device_dir, train, held_out)


def test_personalize_refuses_without_ledger_or_private_part(models, client_data, tmp_path):
    client_id, train, held_out = client_data
    config = _config(finetune_epochs=0)
    with pytest.raises(DataError, match="must hold its own lora_B"):
        personalize(models, config, "fedsa", client_id, {}, tmp_path / "nothing", train, held_out)
    with pytest.raises(DataError, match="no privacy ledger"):  # DP run without a ledger: unknown budget
        personalize(models, config, "ffa", client_id, {}, tmp_path / "nothing", train, held_out)
    no_dp = _config(dp="none", target_epsilon=0.0, finetune_epochs=0)
    saved_global = adapter_state(models.lora_model(no_dp))  # a run's saved global adapter: every LoRA tensor
    result = personalize(models, no_dp, "ffa", client_id, saved_global, tmp_path, train, held_out)
    assert result.federated == result.finetuned == result.interpolated and result.federated.epsilon is None
