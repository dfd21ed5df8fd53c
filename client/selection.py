"""Model selection on the device without record-level DP: how long to train (early stopping) and how
much to trust the global model (the mixture weight λ), both chosen on a validation slice of the
device's own train split. The held-out split is never used for any choice.

Why only without DP: a choice made by looking at the data is itself a release about that data, and
DP-SGD's accounting covers the training steps, not a selection. A record-level DP run therefore
trains its fixed number of epochs and mixes with the fixed λ (and a selection with a useful ε would
need far more validation records than the tens a device holds).

Why it matters without DP: on a device's few records, plain training at the learning rate DP needs
overshoots within a few epochs (the held-out loss turns up again), so a fixed epoch count measures
each method at an arbitrary point of its curve. Local-only and fine-tuning are selected the same
way, from the same slice, with the same cap.

Written by hand: early stopping over a plain torch loop is a dozen lines; the libraries that offer
it (Lightning, HF Trainer) would replace the training loop that DP-SGD shares with this path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from client.dp_training import token_log_probs, train_locally, mean_nll
from client.interpolation import mixture_loss
from fedpriv.config import RunConfig
from fedpriv.errors import DataError
from fedpriv.modeling import adapter_state, load_adapter_state

PATIENCE = 4  # epochs without a better validation loss before training stops
WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)  # candidate λ (weight of the global model)


def selection_active(config: RunConfig) -> bool:
    """Selection on validation is used when record-level DP is off and a validation fraction is set."""
    return not config.record_dp and config.validation_fraction > 0


def split_for_validation(dataset: TensorDataset, fraction: float, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """(fit, validation): a seeded random `fraction` of the records (at least one) for validation."""
    n = len(dataset)
    if n < 2:
        raise DataError(f"{n} training record(s): selection on validation needs at least 2 (or set validation-fraction to 0)")
    n_validation = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    tensors = dataset.tensors
    pick = lambda idx: TensorDataset(*(t[idx] for t in tensors))  # noqa: E731
    return pick(order[n_validation:]), pick(order[:n_validation])


@dataclass(frozen=True)
class EarlyStopped:
    epochs: int  # epochs of the model kept (0 = the starting model)
    epochs_run: int  # epochs trained before stopping
    start_log_probs: torch.Tensor  # the starting model's token log-probabilities on the validation slice
    log_probs: torch.Tensor  # ... and the kept model's
    state: dict[str, torch.Tensor]  # the kept model's adapter state (what `model` was left at)

    @property
    def validation_loss(self) -> float:
        """The kept model's mean token NLL on the validation slice."""
        return mean_nll(self.log_probs)


def train_with_early_stopping(
    model, fit: TensorDataset, validation: TensorDataset, config: RunConfig, seed: int, max_epochs: int, patience: int = PATIENCE
) -> EarlyStopped:
    """Train without DP for up to `max_epochs`, evaluating on `validation` after every epoch, and
    leave `model` at the epoch (0 = untouched) with the lowest validation loss."""
    if config.record_dp:
        raise ValueError("early stopping on validation is not allowed under record-level DP")
    start = token_log_probs(model, validation)
    best_log_probs, best_loss = start, mean_nll(start)
    best_epoch, best_state, ran = 0, adapter_state(model), 0

    def after_epoch(epoch: int) -> bool:
        nonlocal best_log_probs, best_loss, best_epoch, best_state, ran
        ran = epoch
        log_probs = token_log_probs(model, validation)
        loss = mean_nll(log_probs)
        if loss < best_loss or not math.isfinite(best_loss):
            best_log_probs, best_loss, best_epoch, best_state = log_probs, loss, epoch, adapter_state(model)
        return epoch - best_epoch >= patience

    if max_epochs > 0:
        train_locally(model, fit, config, None, seed, epochs=max_epochs, after_epoch=after_epoch)
    load_adapter_state(model, best_state)
    return EarlyStopped(best_epoch, ran, start, best_log_probs, best_state)


def choose_global_weight(global_log_probs: torch.Tensor, private_log_probs: torch.Tensor, grid: tuple[float, ...] = WEIGHT_GRID) -> float:
    """The λ of `grid` whose mixture has the lowest validation loss (the smallest λ on a tie)."""
    return min(grid, key=lambda weight: (mixture_loss(global_log_probs, private_log_probs, weight), weight))
