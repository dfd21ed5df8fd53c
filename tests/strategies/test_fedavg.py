"""FedAvg over LoRA factors: A and B averaged separately by num-examples (inexact for B·A)."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.base import decode_record
from strategies.fedavg import FedAvgLora
from tests.fakes import ONE_NODE, configure_by_node, instruction_arrays, lora_pairs, make_adapter, make_reply, perturbed

pytestmark = pytest.mark.usefixtures("task_identity")


def test_fedavg_averages_factors_separately_and_is_inexact():
    initial = make_adapter(rank=4, seed=0)
    strategy = FedAvgLora(**ONE_NODE)
    msgs = configure_by_node(strategy, [1, 2, 3], initial)
    assert set(instruction_arrays(msgs[1])) == set(initial)  # both factors travel
    trained = {n: perturbed(instruction_arrays(msgs[n]), seed=n, scale=0.3) for n in msgs}
    weights = {1: 10, 2: 30, 3: 60}
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[n], trained[n], num_examples=weights[n]) for n in msgs])
    out = decode_record(arrays)
    total = sum(weights.values())
    for key in initial:
        expected = sum(weights[n] * trained[n][key].astype(np.float64) for n in msgs) / total
        np.testing.assert_allclose(out[key], expected, rtol=1e-5, atol=1e-6)
    a_key, b_key = lora_pairs(initial)[0]
    product_of_means = out[b_key].astype(np.float64) @ out[a_key]
    mean_of_products = sum(weights[n] * trained[n][b_key].astype(np.float64) @ trained[n][a_key] for n in msgs) / total
    assert not np.allclose(product_of_means, mean_of_products, atol=1e-4)  # why ffa exists
