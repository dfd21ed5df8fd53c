"""Robust aggregation options: per-client norm bound and coordinate-wise trimmed mean."""

from __future__ import annotations

import numpy as np
import pytest

from fedpriv.errors import ConfigError
from strategies.base import decode_record
from strategies.fedavg import FedAvgLora
from strategies.registry import build_strategy
from tests.fakes import ONE_NODE, configure_by_node, make_adapter, make_reply, perturbed

pytestmark = pytest.mark.usefixtures("task_identity")


def test_trimmed_mean_with_secure_aggregation_raises_config_error():
    with pytest.raises(ConfigError) as err:
        FedAvgLora(trim_beta=0.2, secure_aggregation=True)
    assert err.value.key == "trim-beta"
    assert "secure-aggregation" in str(err.value) and "trim-beta" in str(err.value)
    with pytest.raises(ConfigError, match="secure-aggregation"):
        build_strategy("ffa", **{"trim-beta": 0.1, "secure-aggregation": True})
    # Norm bounding is fine with secure aggregation.
    assert build_strategy("ffa", **{"norm-bound": 1.0, "secure-aggregation": True}).norm_bound == 1.0


def test_norm_bound_clips_each_update_before_summation():
    initial = make_adapter(rank=2, seed=6)
    strategy = FedAvgLora(norm_bound=0.5, **ONE_NODE)
    msgs = configure_by_node(strategy, [1, 2], initial)
    huge = {k: v + 100.0 for k, v in initial.items()}
    small = perturbed(initial, 2, scale=1e-3)
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[1], huge), make_reply(msgs[2], small)])
    out = decode_record(arrays)
    delta = np.concatenate([(out[k].astype(np.float64) - initial[k]).ravel() for k in initial])
    # Each clipped update has norm <= 0.5, so the mean moves by at most 0.5.
    assert np.linalg.norm(delta) <= 0.5 + 1e-5
    assert np.linalg.norm(delta) > 0.2  # the big update still counts (clipped, not dropped)


def test_trimmed_mean_ignores_an_outlier():
    initial = make_adapter(rank=2, seed=7)
    strategy = FedAvgLora(trim_beta=0.2, **ONE_NODE)
    nodes = [1, 2, 3, 4, 5]
    msgs = configure_by_node(strategy, nodes, initial)
    honest = {n: perturbed(initial, n, scale=1e-3) for n in nodes[:4]}
    attacker = {k: v + 50.0 for k, v in initial.items()}
    arrays, _ = strategy.aggregate_train(1, [*(make_reply(msgs[n], honest[n]) for n in nodes[:4]), make_reply(msgs[5], attacker)])
    out = decode_record(arrays)
    for key in initial:
        assert np.max(np.abs(out[key] - initial[key])) < 0.01
