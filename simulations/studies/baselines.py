"""The two baselines personalization is measured against, trained like a federated client.

* **global-only**: the federation's final global adapter, nothing of the device's own added
  (`evaluate_adapter`).
* **local-only**: no federation; the device trains its own adapter on its own train split for the
  same total number of local epochs as a federated client (`rounds * local_epochs + finetune_epochs`),
  with the same DP-SGD noise multiplier, so it spends the same record-level budget
  (`train_local_only`). Without record-level DP it is the personalization's from-scratch
  candidate (`client.personalize.train_from_scratch_selected`), so the two are the same model.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from client.device import device_seed
from client.dp_training import TrainOutcome, evaluate, train_locally
from client.personalize import BaseModelCache, Evaluated, total_local_epochs, train_from_scratch_selected, validation_split
from client.privacy_ledger import PrivacyLedger
from client.selection import EarlyStopped, selection_active
from fedpriv.adapter_parts import merge_adapter, set_trainable_for_mode
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, load_adapter_state


def evaluate_adapter(models: BaseModelCache, config: RunConfig, state: dict[str, torch.Tensor], held_out: TensorDataset) -> Evaluated:
    model = models.lora_model(config)
    load_adapter_state(model, merge_adapter(adapter_state(model), state))
    loss, perplexity = evaluate(model, held_out)
    return Evaluated(loss, perplexity)


def train_local_only(
    models: BaseModelCache, config: RunConfig, client_id: str, train_set: TensorDataset, held_out: TensorDataset
) -> tuple[Evaluated, PrivacyLedger | None, TrainOutcome | EarlyStopped]:
    """Local-only baseline: a fresh adapter, `total_local_epochs(config)` epochs on the device's own
    train split, with a fresh ledger and the federated client's σ; never more than `target_epsilon`.
    Without record-level DP (and a validation fraction): up to that many epochs, keeping the best on
    the validation slice, exactly as the personalized fine-tuning is selected (`client.selection`).
    Under `dp-scope uploads` it never leaves the device, so it trains as without DP."""
    config = config.on_device()
    if selection_active(config):
        model, stopped = train_from_scratch_selected(models, config, client_id, *validation_split(config, client_id, train_set))
        loss, perplexity = evaluate(model, held_out)
        return Evaluated(loss, perplexity, epochs=stopped.epochs), None, stopped
    model = models.lora_model(config)
    set_trainable_for_mode(model, "fedavg")  # a plain LoRA: A and B trained
    seed = device_seed(config, client_id, "local-only")
    ledger = PrivacyLedger(accountant=config.accountant) if config.record_dp else None
    outcome = train_locally(model, train_set, config, ledger, seed, epochs=total_local_epochs(config))
    loss, perplexity = evaluate(model, held_out)
    epsilon = ledger.epsilon(config.delta) if ledger is not None else None
    return Evaluated(loss, perplexity, epsilon, outcome.round_steps, total_local_epochs(config)), ledger, outcome
