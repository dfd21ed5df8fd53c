"""LoraStrategy, the base of every strategy: the server step (η) on the aggregate, and Flower's own
``Strategy.start`` loop driving each strategy end to end with an in-process grid."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord

from fedpriv.adapter_parts import lora_role
from fedpriv.errors import ConfigError
from strategies.base import decode_record, to_array_record
from strategies.client_dp import ClientLevelDP
from strategies.fedavg import FedAvgLora
from strategies.fedsa import FedSALora
from strategies.ffa import FFALora
from strategies.registry import build_strategy
from tests.fakes import ONE_NODE, FakeGrid, configure_by_node, instruction_arrays, make_adapter, make_reply

pytestmark = pytest.mark.usefixtures("task_identity")


def _aggregate_once(strategy, initial, trained_seed=11, weights=(10, 30, 60)):
    msgs = configure_by_node(strategy, [1, 2, 3], initial)
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
    out, before, sent, trained = _aggregate_once(cls(**options, **ONE_NODE), initial)
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
    result = strategy.start(grid=_LoopGrid([1, 2, 3]), initial_arrays=to_array_record(initial), num_rounds=2,
                            train_config=ConfigRecord({"lora-alpha": 32.0}))
    assert all(not v for v in strategy.rejections.values())
    out = decode_record(result.arrays)
    expected_keys = [k for k in initial if lora_role(k) == "A"] if name == "fedsa" else list(initial)
    assert list(out) == expected_keys
    assert all(np.isfinite(v).all() for v in out.values())
    if isinstance(strategy, ClientLevelDP):
        assert strategy.privacy_record()["rounds"] == 2
