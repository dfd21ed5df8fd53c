"""FFA-LoRA: A frozen at the shared seeded init, only B travels and is averaged (exactly)."""

from __future__ import annotations

import numpy as np
import pytest

from fedpriv.adapter_parts import lora_role, shared_lora_A_init
from strategies.base import decode_record, to_array_record
from strategies.ffa import FFALora
from tests.fakes import ONE_NODE, configure_by_node, lora_pairs, make_adapter, make_reply

pytestmark = pytest.mark.usefixtures("task_identity")


def test_ffa_sends_only_B_keeps_A_fixed_and_averages_exactly():
    initial = make_adapter(rank=4, seed=1, zero_b=True)
    strategy = FFALora(a_seed=7, **ONE_NODE)
    msgs = configure_by_node(strategy, [1, 2, 3], initial, config={"lr": 0.1})
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
    for a_key, b_key in lora_pairs(initial):
        assert np.array_equal(out[a_key], A0[a_key])  # A stays bit-identical to the shared init
        exact = sum(weights[n] * trained[n][b_key].astype(np.float64) @ A0[a_key].astype(np.float64) for n in msgs) / total
        np.testing.assert_allclose(out[b_key].astype(np.float64) @ A0[a_key], exact, rtol=1e-5, atol=1e-6)
    # An upload that carries A is rejected (unexpected keys).
    msgs2 = configure_by_node(strategy, [1], decode_record(arrays), server_round=2)
    with_a = {**trained[1], a_keys[0]: A0[a_keys[0]]}
    assert strategy.aggregate_train(2, [make_reply(msgs2[1], with_a)])[0] is None
    assert "unexpected keys" in strategy.rejections[2][0][1]


def test_ffa_upload_is_half_of_fedavg():
    initial = make_adapter(rank=8, dim_in=16, dim_out=16, seed=2)
    fedavg_bytes = to_array_record(initial).count_bytes()
    msgs = configure_by_node(FFALora(**ONE_NODE), [1], initial)
    assert msgs[1].content["arrays"].count_bytes() < 0.55 * fedavg_bytes
