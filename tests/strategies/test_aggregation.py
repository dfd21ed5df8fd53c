"""LoRA-aware aggregation: fedavg, ffa (exact), fedsa (B never sent), hetlora (ranks), robust options, registry."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord

from fedpriv.adapter_parts import lora_role, partner_key, shared_lora_A_init
from fedpriv.errors import ConfigError
from strategies.base import decode_record
from strategies.client_dp import ClientLevelDP
from strategies.fedavg import FedAvgLora
from strategies.fedsa import FedSALora
from strategies.ffa import FFALora
from strategies.hetlora import HetLora, flexlora_factors
from strategies.registry import STRATEGIES, build_strategy
from tests.fakes import FakeGrid, ensure_task_identity, instruction_arrays, make_adapter, make_reply

COMMON = dict(min_train_nodes=1, min_available_nodes=1, min_evaluate_nodes=1, seed=0)


@pytest.fixture(autouse=True, scope="module")
def _identity():
    ensure_task_identity()


def _record(arrays):
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def _configure(strategy, nodes, arrays, server_round=1, config=None):
    msgs = strategy.configure_train(server_round, _record(arrays), ConfigRecord(config or {}), FakeGrid(nodes))
    return {m.metadata.dst_node_id: m for m in msgs}


def _perturb(arrays, seed, scale=0.05):
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0, scale, v.shape)).astype(np.float32) for k, v in arrays.items()}


def _pairs(arrays):
    return [(k, partner_key(k)) for k in arrays if lora_role(k) == "A"]


# ---------------------------------------------------------------------------------------------


def test_fedavg_averages_factors_separately_and_is_inexact():
    initial = make_adapter(rank=4, seed=0)
    strategy = FedAvgLora(**COMMON)
    msgs = _configure(strategy, [1, 2, 3], initial)
    assert set(instruction_arrays(msgs[1])) == set(initial)  # both factors travel
    trained = {n: _perturb(instruction_arrays(msgs[n]), seed=n, scale=0.3) for n in msgs}
    weights = {1: 10, 2: 30, 3: 60}
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[n], trained[n], num_examples=weights[n]) for n in msgs])
    out = decode_record(arrays)
    total = sum(weights.values())
    for key in initial:
        expected = sum(weights[n] * trained[n][key].astype(np.float64) for n in msgs) / total
        np.testing.assert_allclose(out[key], expected, rtol=1e-5, atol=1e-6)
    a_key, b_key = _pairs(initial)[0]
    product_of_means = out[b_key].astype(np.float64) @ out[a_key]
    mean_of_products = sum(weights[n] * trained[n][b_key].astype(np.float64) @ trained[n][a_key] for n in msgs) / total
    assert not np.allclose(product_of_means, mean_of_products, atol=1e-4)  # why ffa exists


def test_ffa_sends_only_B_keeps_A_fixed_and_averages_exactly():
    initial = make_adapter(rank=4, seed=1, zero_b=True)
    strategy = FFALora(a_seed=7, **COMMON)
    msgs = _configure(strategy, [1, 2, 3], initial, config={"lr": 0.1})
    a_keys = [k for k in initial if lora_role(k) == "A"]
    b_keys = [k for k in initial if lora_role(k) == "B"]
    for msg in msgs.values():
        assert set(msg.content["arrays"].keys()) == set(b_keys)  # no A travels; uploads/downloads halve
        cfg = msg.content["config"]
        assert cfg["lora-mode"] == "ffa" and cfg["lora-a-seed"] == 7 and cfg["lora-a-init"] == "kaiming_uniform"
        assert cfg["server-round"] == 1 and cfg["lr"] == 0.1
    # The server's A0 is the one every client rebuilds from the seed.
    A0 = shared_lora_A_init({k: initial[k].shape for k in a_keys}, seed=7)
    for key in a_keys:
        assert np.array_equal(strategy.frozen_A[key], A0[key])

    rng = np.random.default_rng(3)
    trained = {n: {k: rng.normal(0, 0.2, initial[k].shape).astype(np.float32) for k in b_keys} for n in msgs}
    weights = {1: 5, 2: 15, 3: 80}
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[n], trained[n], num_examples=weights[n]) for n in msgs])
    out = decode_record(arrays)
    assert list(out) == list(initial)
    total = sum(weights.values())
    for a_key, b_key in _pairs(initial):
        assert np.array_equal(out[a_key], A0[a_key])  # A stays bit-identical to the shared init
        exact = sum(weights[n] * trained[n][b_key].astype(np.float64) @ A0[a_key].astype(np.float64) for n in msgs) / total
        np.testing.assert_allclose(out[b_key].astype(np.float64) @ A0[a_key], exact, rtol=1e-5, atol=1e-6)
    # An upload that carries A is rejected (unexpected keys).
    msgs2 = _configure(strategy, [1], decode_record(arrays), server_round=2)
    with_a = {**trained[1], a_keys[0]: A0[a_keys[0]]}
    assert strategy.aggregate_train(2, [make_reply(msgs2[1], with_a)])[0] is None
    assert "unexpected keys" in strategy.rejections[2][0][1]


def _aggregate_once(strategy, initial, trained_seed=11, weights=(10, 30, 60)):
    msgs = _configure(strategy, [1, 2, 3], initial)
    sent = {n: instruction_arrays(msgs[n]) for n in msgs}
    before = dict(strategy.round_state(1).global_arrays)
    rng = np.random.default_rng(trained_seed)
    trained = {n: {k: (v + rng.normal(0, 0.2, v.shape)).astype(np.float32) for k, v in sent[n].items()} for n in msgs}
    replies = [make_reply(msgs[n], trained[n], num_examples=w) for n, w in zip(msgs, weights)]
    arrays, _ = strategy.aggregate_train(1, replies)
    return decode_record(arrays), before, sent, trained


@pytest.mark.parametrize("cls", [FedAvgLora, FFALora, FedSALora])
@pytest.mark.parametrize("eta", [None, 0.5, 3.0])
def test_server_learning_rate_steps_the_global_by_eta_times_the_weighted_mean_update(cls, eta):
    """global' = global + η·Σ wᵢ(replyᵢ − sentᵢ) / Σ wᵢ on the keys the clients train, computed by
    hand here; η unset is plain FedAvg (η = 1). Keys outside the update (ffa's frozen A, fedsa's
    local B) keep the global value whatever η."""
    initial = make_adapter(rank=4, seed=12)
    options = {} if eta is None else {"server_learning_rate": eta}
    out, before, sent, trained = _aggregate_once(cls(**options, **COMMON), initial)
    step = 1.0 if eta is None else eta
    weights = {1: 10, 2: 30, 3: 60}
    assert set(out) == set(before)
    for key in before:
        if key not in sent[1]:
            assert np.array_equal(out[key], before[key])
            continue
        mean_update = sum(w * (trained[n][key].astype(np.float64) - sent[n][key]) for n, w in weights.items()) / 100
        expected = before[key].astype(np.float64) + step * mean_update
        np.testing.assert_allclose(out[key], expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(out[key], before[key], atol=1e-3)  # the update is not negligible


def test_server_learning_rate_must_be_positive_and_step_the_adapter():
    for bad in (0.0, -1.0, float("nan"), float("inf"), True, "fast"):
        with pytest.raises(ConfigError, match="server-learning-rate"):
            build_strategy("fedavg", **{"server-learning-rate": bad})
    # hetlora's svd and weight padding rebuild the global adapter instead of stepping it.
    for options in ({"hetlora-method": "svd"}, {"hetlora-pad-target": "weights"}):
        with pytest.raises(ConfigError, match="server-learning-rate"):
            build_strategy("hetlora", **{"server-learning-rate": 2.0, **options})
    assert build_strategy("hetlora", **{"server-learning-rate": 2.0}).server_learning_rate == 2.0


def test_ffa_upload_is_half_of_fedavg():
    initial = make_adapter(rank=8, dim_in=16, dim_out=16, seed=2)
    fedavg_bytes = _record(initial).count_bytes()
    msgs = _configure(FFALora(**COMMON), [1], initial)
    assert msgs[1].content["arrays"].count_bytes() < 0.55 * fedavg_bytes


def test_fedsa_never_puts_B_in_any_outgoing_message():
    initial = make_adapter(rank=4, seed=4)
    strategy = FedSALora(**COMMON)
    msgs = _configure(strategy, [1, 2], initial)
    evals = strategy.configure_evaluate(1, _record(initial), ConfigRecord({}), FakeGrid([1, 2]))
    for msg in [*msgs.values(), *evals]:
        keys = list(msg.content["arrays"].keys())
        assert keys and all(lora_role(k) == "A" for k in keys)
        assert not any("lora_B" in k for k in keys)
        assert msg.content["config"]["lora-mode"] == "fedsa"
    trained = {n: _perturb(instruction_arrays(msgs[n]), seed=n) for n in msgs}
    # A client leaking its B is rejected.
    leaky = {**trained[2], **{k: v for k, v in initial.items() if lora_role(k) == "B"}}
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[1], trained[1], num_examples=3), make_reply(msgs[2], leaky)])
    assert strategy.accepted[1] == [1]
    assert "unexpected keys" in strategy.rejections[1][0][1]
    out = decode_record(arrays)
    assert all(lora_role(k) == "A" for k in out)  # the global adapter holds A only
    for key in out:
        np.testing.assert_allclose(out[key], trained[1][key], rtol=1e-6, atol=1e-7)
    # Round 2 from that aggregate: still only A.
    msgs2 = _configure(strategy, [1, 2], out, server_round=2)
    assert all(lora_role(k) == "A" for m in msgs2.values() for k in m.content["arrays"].keys())


# ---------------------------------------------------------------------------------------------
# hetlora


def _het_setup(method="zero_pad", **kwargs):
    initial = make_adapter(rank=16, dim_in=24, dim_out=20, seed=5)
    strategy = HetLora(client_ranks={1: 4, 2: 16}, node_profiles={3: "phone"}, method=method, **COMMON, **kwargs)
    msgs = _configure(strategy, [1, 2, 3], initial, config={"lora-alpha": 32.0, "lora-rank": 16})
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
    evals = strategy.configure_evaluate(1, _record(initial), ConfigRecord({}), FakeGrid([1, 2, 3]))
    for msg in evals:
        rank = expected[msg.metadata.dst_node_id]
        assert msg.content["config"]["lora-rank"] == rank
        assert all(v.shape[0 if lora_role(k) == "A" else 1] == rank for k, v in instruction_arrays(msg).items())


def test_hetlora_zero_pad_aggregation_and_rank_validation():
    initial, strategy, msgs = _het_setup()
    trained = {n: _perturb(instruction_arrays(msgs[n]), seed=n) for n in msgs}
    weights = {1: 10, 2: 20, 3: 30}
    # Node 3 replies at the wrong rank (16 instead of 4): rejected, not broadcast into the sum.
    wrong = _perturb(instruction_arrays(msgs[2]), seed=33)
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
    trained = {n: _perturb(instruction_arrays(msgs[n]), seed=n) for n in msgs}
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
    trained = {n: _perturb(instruction_arrays(msgs[n]), seed=n, scale=0.3) for n in msgs}
    w = {1: 1.0, 2: 3.0, 3: 2.0}
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[n], trained[n], num_examples=w[n]) for n in msgs])
    out = decode_record(arrays)
    for a_key, b_key in _pairs(initial):
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
    HetLora(**COMMON)  # default profile ranks phone=4, hospital=16
    unknown = HetLora(**COMMON)
    m = _configure(unknown, [42], initial)
    assert m[42].content["config"]["lora-rank"] == 4  # unknown node: smallest profile rank
    reply = make_reply(m[42], _perturb(instruction_arrays(m[42]), 1), client_extra={"profile": "hospital"})
    unknown.aggregate_train(1, [reply])
    m2 = _configure(unknown, [42], initial, server_round=2)
    assert m2[42].content["config"]["lora-rank"] == 16
    too_big = HetLora(client_ranks={1: 32}, **COMMON)
    with pytest.raises(ConfigError, match="hetlora-client-ranks"):
        _configure(too_big, [1], initial)


# ---------------------------------------------------------------------------------------------
# robust options


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
    strategy = FedAvgLora(norm_bound=0.5, **COMMON)
    msgs = _configure(strategy, [1, 2], initial)
    huge = {k: v + 100.0 for k, v in initial.items()}
    small = _perturb(initial, 2, scale=1e-3)
    arrays, _ = strategy.aggregate_train(1, [make_reply(msgs[1], huge), make_reply(msgs[2], small)])
    out = decode_record(arrays)
    delta = np.concatenate([(out[k].astype(np.float64) - initial[k]).ravel() for k in initial])
    # Each clipped update has norm <= 0.5, so the mean moves by at most 0.5.
    assert np.linalg.norm(delta) <= 0.5 + 1e-5
    assert np.linalg.norm(delta) > 0.2  # the big update still counts (clipped, not dropped)


def test_trimmed_mean_ignores_an_outlier():
    initial = make_adapter(rank=2, seed=7)
    strategy = FedAvgLora(trim_beta=0.2, **COMMON)
    nodes = [1, 2, 3, 4, 5]
    msgs = _configure(strategy, nodes, initial)
    honest = {n: _perturb(initial, n, scale=1e-3) for n in nodes[:4]}
    attacker = {k: v + 50.0 for k, v in initial.items()}
    arrays, _ = strategy.aggregate_train(1, [*(make_reply(msgs[n], honest[n]) for n in nodes[:4]), make_reply(msgs[5], attacker)])
    out = decode_record(arrays)
    for key in initial:
        assert np.max(np.abs(out[key] - initial[key])) < 0.01


# ---------------------------------------------------------------------------------------------
# registry


def test_registry_names_and_options():
    assert set(STRATEGIES) == {"fedavg", "ffa", "hetlora", "fedsa"}
    for name, cls in STRATEGIES.items():
        assert type(build_strategy(name)) is cls
    het = build_strategy("hetlora", **{"hetlora-profile-ranks": "phone=4,hospital=16", "hetlora-node-profiles": "3=phone",
                                       "hetlora-client-ranks": "7=8", "hetlora-method": "svd"})
    assert het.profile_ranks == {"phone": 4, "hospital": 16} and het.node_profiles == {3: "phone"}
    assert het.client_ranks == {7: 8} and het.method == "svd"
    with pytest.raises(ConfigError, match="ffa-a-seed"):
        build_strategy("fedavg", **{"ffa-a-seed": 3})
    with pytest.raises(ConfigError, match="strategy"):
        build_strategy("krum")
    dp = build_strategy("auto", **{"client-dp": True, "dp-clipping-norm": 1.0, "dp-noise-multiplier": 1.0,
                                   "dp-sample-rate": 0.1})
    assert isinstance(dp, ClientLevelDP) and isinstance(dp.strategy, FFALora)  # ffa is the default under DP
    assert type(build_strategy(None)) is FedAvgLora
    with pytest.raises(ConfigError, match="client-dp"):
        build_strategy("ffa", **{"dp-noise-multiplier": 1.0})


# ---------------------------------------------------------------------------------------------
# Flower's own Strategy.start loop, with an in-process grid


class _LoopGrid(FakeGrid):
    def send_and_receive(self, messages, timeout=None):
        from flwr.app import Message, MetricRecord, RecordDict

        replies = []
        for msg in messages:
            if msg.metadata.message_type == "train":
                replies.append(make_reply(msg, {k: v + 0.01 for k, v in instruction_arrays(msg).items()}, num_examples=5))
            else:
                metrics = MetricRecord({"eval_loss": 1.0, "num-examples": 3})
                replies.append(Message(RecordDict({"metrics": metrics}), reply_to=msg))
        return replies


@pytest.mark.parametrize(
    "name,options",
    [
        ("fedavg", {}),
        ("ffa", {}),
        ("fedsa", {}),
        ("hetlora", {"hetlora-client-ranks": "1=4,2=16"}),
        ("hetlora", {"hetlora-method": "svd"}),
        ("auto", {"client-dp": True, "dp-clipping-norm": 1.0, "dp-noise-multiplier": 1.0, "dp-sample-rate": 0.7,
                  "num-rounds": 2}),
    ],
)
def test_runs_in_flower_start_loop(name, options):
    strategy = build_strategy(name, **{"min-train-nodes": 2, "min-available-nodes": 2, "min-evaluate-nodes": 2,
                                       "seed": 0}, **options)
    initial = make_adapter(rank=16, seed=8)
    result = strategy.start(grid=_LoopGrid([1, 2, 3]), initial_arrays=_record(initial), num_rounds=2,
                            train_config=ConfigRecord({"lora-alpha": 32.0}))
    assert all(not v for v in strategy.rejections.values())
    out = decode_record(result.arrays)
    expected_keys = [k for k in initial if lora_role(k) == "A"] if name == "fedsa" else list(initial)
    assert list(out) == expected_keys
    assert all(np.isfinite(v).all() for v in out.values())
    if isinstance(strategy, ClientLevelDP):
        assert strategy.privacy_record()["rounds"] == 2
