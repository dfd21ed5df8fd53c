"""client.interpolation: the output mixture behind the `personalized` model."""

from __future__ import annotations

import math

import pytest
import torch

from client.dp_training import encode, evaluate, mean_nll, token_log_probs
from client.interpolation import mixture_loss
from client.personalize import BaseModelCache
from fedpriv.config import RunConfig
from fedpriv.modeling import load_tokenizer
from simulations.synthetic import generate_federation


def test_mixture_is_a_mixture_of_probabilities_not_of_log_probabilities():
    global_lp = torch.log(torch.tensor([0.5, 0.1]))
    private_lp = torch.log(torch.tensor([0.1, 0.5]))
    # each token: ½·0.5 + ½·0.1 = 0.3
    assert mixture_loss(global_lp, private_lp, 0.5) == pytest.approx(-math.log(0.3))
    # λ = 0.25: 0.25·0.5 + 0.75·0.1 = 0.2 and 0.25·0.1 + 0.75·0.5 = 0.4
    assert mixture_loss(global_lp, private_lp, 0.25) == pytest.approx(-(math.log(0.2) + math.log(0.4)) / 2)
    assert mixture_loss(global_lp, private_lp, 1.0) == pytest.approx(mean_nll(global_lp))
    assert mixture_loss(global_lp, private_lp, 0.0) == pytest.approx(mean_nll(private_lp))


def test_mixture_beats_the_weighted_average_of_two_models_that_disagree():
    generator = torch.Generator().manual_seed(0)
    global_lp = torch.log(torch.rand(500, generator=generator))
    private_lp = torch.log(torch.rand(500, generator=generator))
    for weight in (0.25, 0.5, 0.75):
        mixed = mixture_loss(global_lp, private_lp, weight)
        assert mixed < weight * mean_nll(global_lp) + (1 - weight) * mean_nll(private_lp)  # Jensen, strict here
        assert mixed <= min(mean_nll(global_lp) - math.log(weight), mean_nll(private_lp) - math.log(1 - weight))


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
def test_bad_weight_is_refused(weight):
    with pytest.raises(ValueError, match="mixture weight"):
        mixture_loss(torch.zeros(3), torch.zeros(3), weight)


def test_different_token_sets_are_refused():
    with pytest.raises(ValueError, match="different token sets"):
        mixture_loss(torch.zeros(3), torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="no tokens"):
        mixture_loss(torch.zeros(0), torch.zeros(0), 0.5)


def test_token_log_probs_agree_with_the_training_code_evaluation():
    config = RunConfig(model="default", max_seq_len=32).validated()
    model = BaseModelCache("default").lora_model(config)
    texts = generate_federation("phone", 1, 12, seed=3)
    dataset = encode(load_tokenizer("default"), next(iter(texts.values())), config.max_seq_len)
    log_probs = token_log_probs(model, dataset, batch_size=5)  # batches that do not divide the set
    loss, _ = evaluate(model, dataset)
    assert int(log_probs.numel()) == int((dataset.tensors[2][:, 1:] != -100).sum())
    assert mean_nll(log_probs) == pytest.approx(loss, rel=1e-5)
