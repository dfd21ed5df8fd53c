"""FedSA-LoRA: only A is shared; no B in any outgoing message, a reply carrying B is rejected."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord

from fedpriv.adapter_parts import lora_role
from strategies.base import decode_record, to_array_record
from strategies.fedsa import FedSALora
from tests.fakes import ONE_NODE, FakeGrid, configure_by_node, instruction_arrays, make_adapter, make_reply, perturbed

pytestmark = pytest.mark.usefixtures("task_identity")


def test_fedsa_never_puts_B_in_any_outgoing_message():
    initial = make_adapter(rank=4, seed=4)
    strategy = FedSALora(**ONE_NODE)
    msgs = configure_by_node(strategy, [1, 2], initial)
    evals = strategy.configure_evaluate(1, to_array_record(initial), ConfigRecord({}), FakeGrid([1, 2]))
    for msg in [*msgs.values(), *evals]:
        keys = list(msg.content["arrays"].keys())
        assert keys and all(lora_role(k) == "A" for k in keys)
        assert not any("lora_B" in k for k in keys)
        assert msg.content["config"]["lora-mode"] == "fedsa"
    trained = {n: perturbed(instruction_arrays(msgs[n]), seed=n) for n in msgs}
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
    msgs2 = configure_by_node(strategy, [1, 2], out, server_round=2)
    assert all(lora_role(k) == "A" for m in msgs2.values() for k in m.content["arrays"].keys())
