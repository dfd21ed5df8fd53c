"""HetLoRA (zero-padding) and FlexLoRA (SVD): per-client ranks, padded or re-projected aggregation."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord

from fedpriv.adapter_parts import lora_role
from fedpriv.errors import ConfigError
from strategies.base import decode_record, to_array_record
from strategies.hetlora import HetLora, flexlora_factors
from tests.fakes import ONE_NODE, FakeGrid, configure_by_node, instruction_arrays, lora_pairs, make_adapter, make_reply, perturbed

pytestmark = pytest.mark.usefixtures("task_identity")


def _het_setup(method="zero_pad", **kwargs):
    initial = make_adapter(rank=16, dim_in=24, dim_out=20, seed=5)
    strategy = HetLora(client_ranks={1: 4, 2: 16}, node_profiles={3: "phone"}, method=method, **ONE_NODE, **kwargs)
    msgs = configure_by_node(strategy, [1, 2, 3], initial, config={"lora-alpha": 32.0, "lora-rank": 16})
    return initial, strategy, msgs


def test_hetlora_each_client_receives_its_own_rank():
    initial, strategy, msgs = _het_setup()
    expected = {1: 4, 2: 16, 3: 4}  # node 3: profile "phone" -> 4
    for node, rank in expected.items():
        cfg = msgs[node].content["config"]
        assert cfg["lora-rank"] == rank and cfg["lora-mode"] == "hetlora"
        assert cfg["lora-alpha"] == pytest.approx(32.0 * rank / 16)  # alpha / r constant
        arrays = instruction_arrays(msgs[node])
        for key, value in arrays.items():
            if lora_role(key) == "A":
                assert value.shape == (rank, 24)
                np.testing.assert_array_equal(value, initial[key][:rank])
            else:
                assert value.shape == (20, rank)
                np.testing.assert_array_equal(value, initial[key][:, :rank])
    assert strategy.rank_history[1] == expected
    # Evaluate instructions are per-rank as well.
    evals = strategy.configure_evaluate(1, to_array_record(initial), ConfigRecord({}), FakeGrid([1, 2, 3]))
    for msg in evals:
        rank = expected[msg.metadata.dst_node_id]
        assert msg.content["config"]["lora-rank"] == rank
        assert all(v.shape[0 if lora_role(k) == "A" else 1] == rank for k, v in instruction_arrays(msg).items())


def test_hetlora_zero_pad_aggregation_and_rank_validation():
    initial, strategy, msgs = _het_setup()
    trained = {n: perturbed(instruction_arrays(msgs[n]), seed=n) for n in msgs}
    weights = {1: 10, 2: 20, 3: 30}
    # Node 3 replies at the wrong rank (16 instead of 4): rejected, not broadcast into the sum.
    wrong = perturbed(instruction_arrays(msgs[2]), seed=33)
    replies = [make_reply(msgs[1], trained[1], num_examples=10), make_reply(msgs[2], trained[2], num_examples=20),
               make_reply(msgs[3], wrong, num_examples=30)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert strategy.accepted[1] == [1, 2]
    assert "shape" in strategy.rejections[1][0][1]
    out = decode_record(arrays)
    total = weights[1] + weights[2]
    for key, value in initial.items():
        axis = 0 if lora_role(key) == "A" else 1
        expected = value.astype(np.float64).copy()
        for node in (1, 2):
            update = trained[node][key].astype(np.float64) - instruction_arrays(msgs[node])[key]
            pad = [(0, 0), (0, 0)]
            pad[axis] = (0, 16 - update.shape[axis])
            expected += weights[node] / total * np.pad(update, pad)
        np.testing.assert_allclose(out[key], expected, rtol=1e-5, atol=1e-6)


def test_hetlora_weights_padding_matches_paper():
    initial, strategy, msgs = _het_setup(pad_target="weights")
    trained = {n: perturbed(instruction_arrays(msgs[n]), seed=n) for n in msgs}
    w = {1: 1.0, 2: 2.0, 3: 1.0}
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[n], trained[n], num_examples=w[n]) for n in msgs])
    out = decode_record(arrays)
    for key in initial:
        axis = 0 if lora_role(key) == "A" else 1
        expected = 0
        for n in msgs:
            pad = [(0, 0), (0, 0)]
            pad[axis] = (0, 16 - trained[n][key].shape[axis])
            expected = expected + w[n] / 4.0 * np.pad(trained[n][key].astype(np.float64), pad)
        np.testing.assert_allclose(out[key], expected, rtol=1e-5, atol=1e-6)


def test_hetlora_svd_is_best_low_rank_approximation_of_mean_delta_w():
    initial, strategy, msgs = _het_setup(method="svd")
    trained = {n: perturbed(instruction_arrays(msgs[n]), seed=n, scale=0.3) for n in msgs}
    w = {1: 1.0, 2: 3.0, 3: 2.0}
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[n], trained[n], num_examples=w[n]) for n in msgs])
    out = decode_record(arrays)
    for a_key, b_key in lora_pairs(initial):
        mean_dw = sum(w[n] * trained[n][b_key].astype(np.float64) @ trained[n][a_key] for n in msgs) / sum(w.values())
        u, s, vt = np.linalg.svd(mean_dw)
        best16 = (u[:, :16] * s[:16]) @ vt[:16]
        np.testing.assert_allclose(out[b_key].astype(np.float64) @ out[a_key], best16, rtol=1e-4, atol=1e-5)
        # Truncating to a client's rank r is the best rank-r approximation (what the phone receives).
        best4 = (u[:, :4] * s[:4]) @ vt[:4]
        np.testing.assert_allclose(out[b_key][:, :4].astype(np.float64) @ out[a_key][:4], best4, rtol=1e-4, atol=1e-5)
    # When the total rank fits, the SVD re-projection is exact.
    rng = np.random.default_rng(0)
    Bs = [rng.normal(size=(9, r)) for r in (2, 3)]
    As = [rng.normal(size=(r, 7)) for r in (2, 3)]
    B, A = flexlora_factors(Bs, As, [1.0, 1.0], rank=6)
    np.testing.assert_allclose(B @ A, (Bs[0] @ As[0] + Bs[1] @ As[1]) / 2, atol=1e-10)


def test_hetlora_learns_profile_from_reply_and_rejects_too_large_rank():
    initial, strategy, msgs = _het_setup()
    HetLora(**ONE_NODE)  # default profile ranks phone=4, hospital=16
    unknown = HetLora(**ONE_NODE)
    m = configure_by_node(unknown, [42], initial)
    assert m[42].content["config"]["lora-rank"] == 4  # unknown node: smallest profile rank
    reply = make_reply(m[42], perturbed(instruction_arrays(m[42]), 1), client_extra={"profile": "hospital"})
    unknown.aggregate_train(1, [reply])
    m2 = configure_by_node(unknown, [42], initial, server_round=2)
    assert m2[42].content["config"]["lora-rank"] == 16
    too_big = HetLora(client_ranks={1: 32}, **ONE_NODE)
    with pytest.raises(ConfigError, match="hetlora-client-ranks"):
        configure_by_node(too_big, [1], initial)
