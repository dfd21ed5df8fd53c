"""The device's side of a secure round (client/secagg_app.py): parameters are checked before any
training, the update is kept clipped in the update space, sent only masked, then deleted. (The
real ClientApp under secure aggregation runs end to end in tests/simulations/test_secure_simulation.py.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict

from client.secagg_app import INPUT_RECORD, STATE_RECORD, secure_train
from fedpriv.config import RunConfig
from fedpriv.released import DECLARATION
from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.layout import VectorLayout
from fedpriv.secagg.messages import MASKED_INPUT, SHARE_KEYS
from fedpriv.secagg.quantization import QuantizationSpec
from fedpriv.secagg.update import SECAGG_RECORD, UpdatePlan
from strategies.base import decode_record, to_array_record
from strategies.secagg import SecAggServer
from tests.fakes import ensure_task_identity, make_adapter, perturbed

pytestmark = pytest.mark.usefixtures("task_identity")

NODES = [11, 22, 33]


def _context(node: int) -> Context:
    return Context(run_id=1, node_id=node, node_config={}, state=RecordDict(), run_config={})


def _setup_message(node: int, server: SecAggServer, plan: UpdatePlan, arrays: dict) -> Message:
    ensure_task_identity()
    fields = {**server.setup_requests()[node].to_fields(), **plan.to_fields()}
    config = ConfigRecord({**RunConfig(dp="none").to_flower(), "server-round": 1})
    content = RecordDict({"arrays": to_array_record(arrays), "config": config, SECAGG_RECORD: ConfigRecord(fields)})
    return Message(content, dst_node_id=node, message_type=MessageType.TRAIN, group_id="1")


class FakeTraining:
    """The device's training: the received arrays plus a seeded change; counts its calls."""

    def __init__(self, num_examples: int = 7) -> None:
        self.calls = 0
        self.num_examples = num_examples

    def __call__(self, msg: Message, context: Context) -> RecordDict:
        self.calls += 1
        trained = perturbed(decode_record(msg.content["arrays"]), seed=self.calls, scale=0.3)
        return RecordDict({"arrays": to_array_record(trained),
                           "metrics": ConfigRecord({"num-examples": self.num_examples}),
                           "client": ConfigRecord({"client-id": "c", "server-round": 1})})


def _round(adapter: dict, clip: float = 0.5):
    server = SecAggServer(1, NODES, VectorLayout.of(adapter).size, QuantizationSpec.for_clients(3, clip))
    return server, UpdatePlan(VectorLayout.of(adapter), l2_bound=clip)


def test_bad_round_parameters_are_refused_before_any_training():
    adapter = make_adapter(rank=2, seed=0)
    server, plan = _round(adapter)
    training = FakeTraining()
    wrong_size = UpdatePlan(VectorLayout(plan.layout.keys[:-1], plan.layout.shapes[:-1]))
    with pytest.raises(ProtocolError, match="update layout holds"):
        secure_train(_setup_message(NODES[0], server, wrong_size, adapter), _context(NODES[0]), training)
    message = _setup_message(NODES[0], server, plan, adapter)
    message.content[SECAGG_RECORD]["threshold"] = 1  # a minority: a lying server could rebuild both secrets
    with pytest.raises(ProtocolError, match="strict majority"):
        secure_train(message, _context(NODES[0]), training)
    assert training.calls == 0  # no ε spent on a round the device refuses


def test_the_update_is_kept_clipped_in_the_update_space_and_deleted_once_masked():
    adapter = make_adapter(rank=2, seed=0)
    server, plan = _round(adapter)
    contexts = {n: _context(n) for n in NODES}
    training = FakeTraining()
    replies = {n: secure_train(_setup_message(n, server, plan, adapter), contexts[n], training) for n in NODES}
    for node, reply in replies.items():
        assert set(reply.content) == {"metrics", "client", SECAGG_RECORD, DECLARATION}  # no arrays, ever
        assert not reply.content.array_records and "arrays" not in reply.content[DECLARATION]
        kept = np.frombuffer(contexts[node].state[INPUT_RECORD]["update"], dtype="<f8")
        # Clipped to the L2 bound less the margin that keeps it within the bound once quantized.
        spec = server.quantization
        assert kept.size == plan.layout.size and np.linalg.norm(kept) == pytest.approx(0.5 - plan.clip_margin(spec), rel=1e-12)
        assert 0 < plan.clip_margin(spec) == pytest.approx(np.sqrt(kept.size) * spec.step)
        assert contexts[node].state[INPUT_RECORD]["weight"] == 7
    server.receive_advertise([(n, dict(r.content[SECAGG_RECORD])) for n, r in replies.items()])
    for stage, requests, receive in server.stages()[1:3]:
        answers = []
        for node, request in requests().items():
            msg = Message(RecordDict({SECAGG_RECORD: ConfigRecord(request.to_fields())}), dst_node_id=node,
                          message_type=MessageType.TRAIN, group_id="1")
            answers.append((node, dict(secure_train(msg, contexts[node], training).content[SECAGG_RECORD])))
        receive(answers)
        if stage == SHARE_KEYS:
            assert all(INPUT_RECORD in c.state for c in contexts.values())
        if stage == MASKED_INPUT:
            assert all(INPUT_RECORD not in c.state and STATE_RECORD in c.state for c in contexts.values())
    # A masked-input request the device has no update for (its state is from another session) is refused.
    stale = _context(NODES[0])
    stale.state[STATE_RECORD] = contexts[NODES[0]].state[STATE_RECORD]
    msg = Message(RecordDict({SECAGG_RECORD: ConfigRecord({"secagg-stage": MASKED_INPUT})}), dst_node_id=NODES[0],
                  message_type=MessageType.TRAIN, group_id="1")
    with pytest.raises(ProtocolError, match="no update was trained"):
        secure_train(msg, stale, training)


def test_the_update_plan_round_trips_and_refuses_malformed_fields():
    plan = UpdatePlan(VectorLayout(("a", "b"), ((2, 3), ())), 0.25, "uniform")
    assert UpdatePlan.from_fields(plan.to_fields()) == plan
    fields = plan.to_fields()
    for change, match in (({"update-keys": ["a", "a"]}, "distinct"), ({"update-ndims": b"\x01"}, "one shape per tensor"),
                          ({"update-weighting": "by-size"}, "weighting"), ({"update-l2-bound": -1.0}, "L2 bound")):
        with pytest.raises(ProtocolError, match=match):
            UpdatePlan.from_fields({**fields, **change})
    assert plan.weight(500, QuantizationSpec(1.0, 16, max_weight=100)) == 1
    weighted = dataclasses.replace(plan, weighting="num-examples")
    assert weighted.weight(500, QuantizationSpec(1.0, 16, max_weight=100)) == 100  # capped at the grid's max weight
