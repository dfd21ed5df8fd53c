"""Client-level DP (DP-FedAvg) wrapper: validation before clipping, clipping, noise, sampling, budget."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord

from fedpriv.adapter_parts import lora_role
from fedpriv.errors import ConfigError
from strategies.accounting import client_level_epsilon
from strategies.base import decode_record, to_array_record
from strategies.client_dp import ClientLevelDP
from strategies.fedavg import FedAvgLora
from strategies.ffa import FFALora
from strategies.hetlora import HetLora
from strategies.robust import clip_update
from tests.fakes import ONE_NODE, FakeGrid, configure_by_node, instruction_arrays, make_adapter, make_reply

pytestmark = pytest.mark.usefixtures("task_identity")

PRIVACY_KEYS = {"epsilon", "delta", "noise_multiplier", "sample_rate", "rounds", "sampling"}


def _dp(inner=None, **kwargs):
    params = dict(clipping_norm=0.5, noise_multiplier=1e-9, sampling="all", seed=0)
    params.update(kwargs)
    return ClientLevelDP(inner or FFALora(**ONE_NODE), **params)


def test_nan_update_is_rejected_before_clipping_and_updates_are_clipped():
    initial = make_adapter(rank=4, seed=0, zero_b=True)
    strategy = _dp()
    msgs = configure_by_node(strategy, [1, 2, 3], initial)
    sent = {n: instruction_arrays(msgs[n]) for n in msgs}
    big = {k: v + 1.0 for k, v in sent[1].items()}  # norm >> S: clipped to S
    small = {k: v + 1e-4 for k, v in sent[2].items()}  # norm < S: unchanged
    nan = {k: v.copy() for k, v in sent[3].items()}
    next(iter(nan.values()))[0, 0] = np.nan
    arrays, metrics = strategy.aggregate_train(1, [make_reply(msgs[n], a) for n, a in ((1, big), (2, small), (3, nan))])
    assert strategy.rejections[1] == [(3, strategy.rejections[1][0][1])]
    assert "non-finite" in strategy.rejections[1][0][1]
    out = decode_record(arrays)
    assert all(np.isfinite(v).all() for v in out.values())
    clipped_big = clip_update({k: big[k].astype(np.float64) - sent[1][k] for k in big}, 0.5)[0]
    for key in sent[1]:  # only B keys in ffa
        expected = (clipped_big[key] + (small[key].astype(np.float64) - sent[2][key])) / 3  # divide by expected m = N = 3
        np.testing.assert_allclose(out[key].astype(np.float64) - initial[key], expected, atol=1e-6)
    for key in initial:
        if lora_role(key) == "A":
            assert np.array_equal(out[key], strategy.strategy.frozen_A[key])  # no noise on the frozen A
    assert metrics["client-dp-clipped-fraction"] == pytest.approx(0.5)
    record = strategy.privacy_records[1]
    assert PRIVACY_KEYS <= set(record) and record["rounds"] == 1 and record["sampling"] == "all"


def test_server_learning_rate_scales_the_accounted_release_and_nothing_else():
    """η acts after the Gaussian mechanism: the accountant is fed the calibrated σ, q and rounds
    (ε recomputed here from them), the released mean is the clipped mean plus noise of std σ·S/m,
    and η only multiplies that release. Applying η before the noise, or letting it change the
    calibration, the clipping or the noise scale, breaks one of these."""
    initial = make_adapter(rank=8, dim_in=64, dim_out=64, layers=2, seed=5, zero_b=True)
    S, rounds = 0.5, 3
    released = {}
    for eta in (1.0, 2.5):
        strategy = _dp(FedAvgLora(server_learning_rate=eta, **ONE_NODE), clipping_norm=S, noise_multiplier=None,
                       target_epsilon=4.0, num_rounds=rounds, sampling="all", population=2)
        msgs = configure_by_node(strategy, [1, 2], initial)
        sent = {n: instruction_arrays(msgs[n]) for n in msgs}
        updates = {n: {k: np.full(v.shape, 0.01 * n, dtype=np.float32) for k, v in sent[n].items()} for n in msgs}
        replies = [make_reply(msgs[n], {k: sent[n][k] + updates[n][k] for k in sent[n]}) for n in msgs]
        arrays, _ = strategy.aggregate_train(1, replies)
        record = strategy.privacy_records[1]
        sigma = strategy.noise_multiplier
        assert (record["noise_multiplier"], record["sample_rate"], record["rounds"]) == (sigma, 1.0, 1)
        assert record["clipping_norm"] == S
        assert record["epsilon"] == pytest.approx(
            client_level_epsilon(noise_multiplier=sigma, sample_rate=1.0, rounds=1, delta=1e-5, sampling="all"))
        assert strategy.accountant.epsilon(rounds) <= 4.0
        clipped = [clip_update({k: u.astype(np.float64) for k, u in updates[n].items()}, S)[0] for n in msgs]
        step = {k: decode_record(arrays)[k].astype(np.float64) - initial[k] for k in initial}
        noise = np.concatenate([(step[k] / eta - (clipped[0][k] + clipped[1][k]) / 2).ravel() for k in initial])
        assert noise.std() == pytest.approx(sigma * S / 2, rel=0.05)  # σ·S on the sum, m = 2
        released[eta] = (sigma, step)
    (sigma_1, step_1), (sigma_eta, step_eta) = released[1.0], released[2.5]
    assert sigma_eta == sigma_1  # the calibration does not see η
    for key in initial:  # same seed, same noise draw: the release is only scaled
        np.testing.assert_allclose(step_eta[key], 2.5 * step_1[key], rtol=1e-5, atol=1e-7)


def test_noise_has_std_sigma_S_over_expected_clients_even_with_no_client():
    initial = make_adapter(rank=8, dim_in=64, dim_out=64, layers=2, seed=1, zero_b=True)
    strategy = _dp(FedAvgLora(**ONE_NODE), clipping_norm=2.0, noise_multiplier=1.5, sampling="poisson",
                   sample_rate=0.5, population=4)
    strategy._rng = np.random.default_rng(123)
    # Force an empty sample: aggregate with no reply still releases (global + noise / m).
    strategy.sample_nodes = lambda nodes: []
    msgs = strategy.configure_train(1, to_array_record(initial), ConfigRecord({}), FakeGrid([1, 2, 3, 4]))
    assert list(msgs) == []
    arrays, _ = strategy.aggregate_train(1, [])
    out = decode_record(arrays)
    noise = np.concatenate([(out[k].astype(np.float64) - initial[k]).ravel() for k in initial])
    expected_std = 1.5 * 2.0 / (0.5 * 4)
    assert noise.std() == pytest.approx(expected_std, rel=0.05)
    assert strategy.accountant.rounds == 1  # the release is accounted


def test_poisson_sampling_includes_nodes_independently():
    strategy = _dp(FFALora(**ONE_NODE), sampling="poisson", sample_rate=0.3, population=200, seed=7)
    nodes = list(range(200))
    counts = [len(strategy.sample_nodes(nodes)) for _ in range(200)]
    assert np.mean(counts) == pytest.approx(60, rel=0.05)
    assert len(set(counts)) > 5  # the number of clients per round varies
    fixed = _dp(FFALora(**ONE_NODE), sampling="fixed", clients_per_round=10, population=200, seed=7)
    assert {len(fixed.sample_nodes(nodes)) for _ in range(20)} == {10}
    assert fixed.sample_rate == pytest.approx(0.05)


def test_privacy_records_grow_and_match_accountant():
    initial = make_adapter(rank=2, seed=2, zero_b=True)
    strategy = _dp(noise_multiplier=1.0, sampling="poisson", sample_rate=0.5, population=4, seed=1, num_rounds=3)
    arrays = to_array_record(initial)
    for rnd in (1, 2, 3):
        msgs = {m.metadata.dst_node_id: m for m in strategy.configure_train(rnd, arrays, ConfigRecord({}), FakeGrid([1, 2, 3, 4]))}
        replies = [make_reply(m, {k: v + 0.01 for k, v in instruction_arrays(m).items()}) for m in msgs.values()]
        arrays, _ = strategy.aggregate_train(rnd, replies)
    eps = [strategy.privacy_records[r]["epsilon"] for r in (1, 2, 3)]
    assert eps[0] < eps[1] < eps[2]
    assert eps[2] == pytest.approx(client_level_epsilon(noise_multiplier=1.0, sample_rate=0.5, rounds=3, delta=1e-5))
    assert strategy.privacy_record()["planned_epsilon"] == pytest.approx(eps[2])


def test_target_epsilon_calibrates_noise_and_budget_stops_training():
    strategy = _dp(noise_multiplier=None, target_epsilon=2.0, num_rounds=5, sampling="poisson", sample_rate=0.5,
                   population=4, max_epsilon=2.0)
    assert strategy.noise_multiplier > 0
    assert strategy.accountant.epsilon(5) <= 2.0
    strategy.accountant.rounds = 5  # budget spent
    assert list(strategy.configure_train(6, to_array_record(make_adapter(rank=2)), ConfigRecord({}), FakeGrid([1, 2, 3, 4]))) == []
    assert strategy.budget_exhausted


def test_wrapper_config_errors():
    # Secure aggregation is no refusal any more: devices clip, the server noises the unmasked sum.
    secure = ClientLevelDP(FFALora(secure_aggregation=True, **ONE_NODE), clipping_norm=1.0, noise_multiplier=1.0, sampling="all")
    assert secure.strategy.secure_aggregation
    with pytest.raises(ConfigError, match="trim-beta"):
        ClientLevelDP(FedAvgLora(trim_beta=0.1, **ONE_NODE), clipping_norm=1.0, noise_multiplier=1.0, sampling="all")
    with pytest.raises(ConfigError, match="hetlora-method"):
        ClientLevelDP(HetLora(method="svd", **ONE_NODE), clipping_norm=1.0, noise_multiplier=1.0, sampling="all")
    with pytest.raises(ConfigError, match="dp-sample-rate"):
        ClientLevelDP(FFALora(**ONE_NODE), clipping_norm=1.0, noise_multiplier=1.0, sampling="poisson")
    with pytest.raises(ConfigError, match="dp-clipping-norm"):
        ClientLevelDP(FFALora(**ONE_NODE), clipping_norm=float("nan"), noise_multiplier=1.0, sampling="all")
    with pytest.raises(ValueError, match="non-finite"):
        clip_update({"k": np.array([np.nan, 1.0])}, 1.0)
