"""The opacus#820 guard on the shipped default model: DP-LoRA that 'trains' (loss falls, ε grows) but
whose adapter does not really move would be useless. Every DP-SGD step must change every adapter
tensor, and the adapter must improve held-out loss, in both per-sample gradient modes."""

from __future__ import annotations

import pytest
import torch

from client.dp_training import encode, evaluate, train_locally
from client.privacy_ledger import PrivacyLedger
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, load_tokenizer
from simulations.synthetic import generate_federation


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_every_dp_step_moves_the_adapter_and_held_out_loss_improves(mode, models, optimizer_steps) -> None:
    config = RunConfig(dp="record", grad_sample_mode=mode, local_epochs=2, rounds=1, noise_multiplier=0.7, batch_size=16,
                       max_seq_len=48).validated()
    tokenizer = load_tokenizer(config.model)
    texts = generate_federation("hospital", num_clients=1, records_per_client=200, seed=5)["hospital-00-cardiology"]
    train_set, held_out = encode(tokenizer, texts[:96], config.max_seq_len), encode(tokenizer, texts[160:], config.max_seq_len)
    model = models.lora_model(config)
    before = adapter_state(model)
    loss_before, _ = evaluate(model, held_out)
    ledger = PrivacyLedger()

    outcome = train_locally(model, train_set, config, ledger, seed=0)

    assert len(optimizer_steps.steps) == outcome.round_steps == ledger.steps > 1
    assert optimizer_steps.unchanged_tensors() == []  # every step moved every LoRA tensor
    after = adapter_state(model)
    assert all(not torch.equal(before[k], after[k]) and torch.isfinite(after[k]).all() for k in before)
    loss_after, _ = evaluate(model, held_out)
    assert loss_after < loss_before - 0.02, (loss_before, loss_after)
