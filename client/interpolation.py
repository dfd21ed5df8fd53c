"""Model interpolation: the device predicts with a mixture of the global model and its own.

p(token) = λ · p_global(token) + (1 − λ) · p_private(token)

This is "model interpolation", one of the three personalization schemes of Mansour et al. (2020,
"Three Approaches for Personalization with Applications to Federated Learning"): the shared adapter
keeps the federation's general knowledge, the private adapter (fine-tuned on the device, never sent)
the device's own style, and the mixture's loss is at most the global model's + ln(1/λ) and the
private model's + ln(1/(1 − λ)) nats per token (ln 2 each at λ = ½). Written here because peft
combines adapters in weight space (add_weighted_adapter), not as a mixture of output distributions.

Mixing two already-trained models is post-processing: it spends no privacy when λ is fixed in
advance. Choosing λ on the device's own data would be a (small, unaccounted) use of that data, so a
record-level DP run keeps the fixed λ; without it, `client.selection` chooses λ on a validation slice.
"""

from __future__ import annotations

import math

import torch

from client.dp_training import mean_nll
from fedpriv.errors import ConfigError

DEFAULT_GLOBAL_WEIGHT = 0.5


def check_weight(global_weight: float) -> float:
    if not 0.0 <= global_weight <= 1.0 or math.isnan(global_weight):
        raise ConfigError("global-weight", f"mixture weight of the global model must be in [0, 1], got {global_weight}")
    return global_weight


def mixture_loss(global_log_probs: torch.Tensor, private_log_probs: torch.Tensor, global_weight: float) -> float:
    """Mean token NLL of the λ-mixture, from each model's per-token log-probabilities."""
    weight = check_weight(global_weight)
    if global_log_probs.shape != private_log_probs.shape:
        raise ValueError(f"log-probabilities of different token sets: {tuple(global_log_probs.shape)} vs {tuple(private_log_probs.shape)}")
    if weight == 0.0:
        return mean_nll(private_log_probs)
    if weight == 1.0:
        return mean_nll(global_log_probs)
    return mean_nll(torch.logaddexp(global_log_probs + math.log(weight), private_log_probs + math.log(1.0 - weight)))
