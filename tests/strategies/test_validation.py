"""Update validation: every malformed reply is rejected with a reason, and the aggregate equals
(bit for bit) the aggregate of the valid replies alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict

from strategies.base import decode_record
from strategies.fedavg import FedAvgLora
from strategies.validation import ValidationPolicy, check_arrays, template_of
from tests.fakes import ONE_NODE, FakeGrid, configure_by_node, default_metrics, instruction_arrays, make_adapter, make_reply

pytestmark = pytest.mark.usefixtures("task_identity")

VALID_NODES = [1, 2, 3]


def _strategy(**kwargs) -> FedAvgLora:
    return FedAvgLora(**ONE_NODE, **kwargs)


def _configure(strategy, nodes, arrays, server_round=1):
    return configure_by_node(strategy, nodes, arrays, server_round, config={"lr": 0.1})


def _trained(instruction: Message, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0, 0.01, v.shape)).astype(np.float32) for k, v in instruction_arrays(instruction).items()}


def _npy_bytes(value: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, value, allow_pickle=False)
    return buf.getvalue()


def _malformed_cases(msgs: dict[int, Message]):
    """(node, reply, expected reason fragment) for one malformed reply per node >= 100."""
    cases = []
    key0 = next(iter(instruction_arrays(msgs[100])))

    def arrays_for(node, seed=0):
        return _trained(msgs[node], seed)

    a = arrays_for(100)
    a[key0][0, 0] = np.nan
    cases.append((100, make_reply(msgs[100], a), "non-finite"))
    a = arrays_for(101)
    a[key0][0, 1] = np.inf
    cases.append((101, make_reply(msgs[101], a), "non-finite"))
    a = arrays_for(102)
    del a[key0]
    cases.append((102, make_reply(msgs[102], a), "missing keys"))
    a = arrays_for(103)
    a["base_model.model.extra.lora_A.weight"] = np.zeros((4, 12), np.float32)
    cases.append((103, make_reply(msgs[103], a), "unexpected keys"))
    a = arrays_for(104)
    a[key0] = np.zeros((a[key0].shape[0] + 1, a[key0].shape[1]), np.float32)
    cases.append((104, make_reply(msgs[104], a), "shape"))
    a = arrays_for(105)
    a[key0] = a[key0].astype(np.float64)
    cases.append((105, make_reply(msgs[105], a), "dtype"))
    # Declared dtype/shape say float32 but the payload decodes to float64 (a lying header).
    a = arrays_for(106)
    record = ArrayRecord({k: Array(v) for k, v in a.items()})
    record[key0] = Array(dtype="float32", shape=tuple(a[key0].shape), stype="numpy.ndarray",
                         data=_npy_bytes(a[key0].astype(np.float64)))
    cases.append((106, make_reply(msgs[106], record), "does not match"))
    # Oversized payload: a second ArrayRecord smuggled into the content.
    a = arrays_for(107)
    reply = make_reply(msgs[107], a)
    reply.content["smuggled"] = ArrayRecord({"x": Array(np.zeros(200_000, np.float32))})
    cases.append((107, reply, "over the cap"))
    cases.append((108, make_reply(msgs[108], arrays_for(108), num_examples=0), "non-positive"))
    cases.append((109, make_reply(msgs[109], arrays_for(109), num_examples=-5), "non-positive"))
    cases.append((110, make_reply(msgs[110], arrays_for(110), num_examples=10**9), "over the cap"))
    cases.append((111, make_reply(msgs[111], arrays_for(111), server_round=0), "stale round"))
    metrics = default_metrics()
    del metrics["num-examples"]
    cases.append((112, make_reply(msgs[112], arrays_for(112), metrics=metrics), "missing metric keys"))
    cases.append((113, make_reply(msgs[113], arrays_for(113), drop=["client"]), "missing 'client'"))
    cases.append((114, Message(Error(code=0, reason="client crashed"), reply_to=msgs[114]), "error reply"))
    cases.append((115, make_reply(msgs[115], arrays_for(115), metrics=default_metrics(train_loss=float("nan"))), "NaN"))
    cases.append((116, make_reply(msgs[116], None), "missing 'arrays'"))
    # Second reply from a node whose first (valid) reply is also in the batch.
    cases.append((1, make_reply(msgs[1], arrays_for(1, seed=99)), "second reply"))
    # A reply from a node that was never sent an instruction this round.
    stranger = Message(RecordDict({"config": ConfigRecord({"server-round": 1})}), dst_node_id=999,
                       message_type=MessageType.TRAIN, group_id="1")
    cases.append((999, make_reply(stranger, arrays_for(1)), "not sent"))
    # Same client-id claimed by another node.
    cases.append((117, make_reply(msgs[117], arrays_for(117), client_id="client-2"), "already replied"))
    return cases


MALFORMED_NODES = list(range(100, 118))


def test_rejects_each_malformed_reply_and_aggregate_is_bit_identical():
    initial = make_adapter(rank=4, seed=1)
    nodes = VALID_NODES + MALFORMED_NODES
    strategy = _strategy()
    msgs = _configure(strategy, nodes, initial)
    assert sorted(msgs) == nodes
    valid = [make_reply(msgs[n], _trained(msgs[n], seed=n), num_examples=10 * n) for n in VALID_NODES]
    cases = _malformed_cases(msgs)
    # Interleave malformed replies between valid ones (the duplicate must come after its original).
    replies = [cases[0][1], valid[0], *[c[1] for c in cases[1:10]], valid[1], *[c[1] for c in cases[10:]], valid[2]]
    arrays, metrics = strategy.aggregate_train(1, replies)

    reasons = dict()
    for node, reason in strategy.rejections[1]:
        reasons.setdefault(node, []).append(reason)
    for node, _, fragment in cases:
        assert node in reasons, f"node {node} ({fragment}) was not rejected"
        assert any(fragment in r for r in reasons[node]), (node, fragment, reasons[node])
    assert len(strategy.rejections[1]) == len(cases)
    assert sorted(strategy.accepted[1]) == VALID_NODES
    assert metrics["num-replies-valid"] == 3
    assert metrics["num-replies-rejected"] == len(cases)

    # The same round with the valid replies only, on a fresh strategy.
    clean = _strategy()
    clean_msgs = _configure(clean, nodes, initial)
    clean_valid = [make_reply(clean_msgs[n], _trained(clean_msgs[n], seed=n), num_examples=10 * n) for n in VALID_NODES]
    clean_arrays, clean_metrics = clean.aggregate_train(1, list(reversed(clean_valid)))
    assert list(arrays.keys()) == list(clean_arrays.keys()) == list(initial)
    for key in arrays:
        assert arrays[key].data == clean_arrays[key].data  # bit-identical serialized bytes
    drop = {"num-replies-rejected"}
    assert {k: v for k, v in metrics.items() if k not in drop} == {k: v for k, v in clean_metrics.items() if k not in drop}

    # And it is the num-examples-weighted mean of the valid replies.
    weights = np.array([10.0 * n for n in VALID_NODES])
    for key, value in decode_record(arrays).items():
        expected = sum(w * _trained(msgs[n], seed=n)[key].astype(np.float64) for n, w in zip(VALID_NODES, weights)) / weights.sum()
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-7)
        assert np.isfinite(value).all()


def test_no_valid_reply_keeps_previous_arrays():
    initial = make_adapter(rank=2, seed=3)
    strategy = _strategy()
    msgs = _configure(strategy, [5, 6], initial)
    bad = _trained(msgs[5], 0)
    bad[next(iter(bad))][:] = np.nan
    arrays, metrics = strategy.aggregate_train(1, [make_reply(msgs[5], bad), Message(Error(code=1, reason="x"), reply_to=msgs[6])])
    assert arrays is None
    assert metrics["num-replies-valid"] == 0 and metrics["num-replies-rejected"] == 2
    assert {n for n, _ in strategy.rejections[1]} == {5, 6}


def test_reply_to_an_older_round_is_stale():
    initial = make_adapter(rank=2, seed=4)
    strategy = _strategy()
    round1 = _configure(strategy, [1, 2], initial, server_round=1)
    round2 = _configure(strategy, [1, 2], initial, server_round=2)
    late = make_reply(round1[1], _trained(round1[1], 0))  # answers round 1's instruction
    ok = make_reply(round2[2], _trained(round2[2], 0))
    arrays, _ = strategy.aggregate_train(2, [late, ok])
    assert arrays is not None
    assert strategy.accepted[2] == [2]
    (node, reason), = strategy.rejections[2]
    assert node == 1 and "round" in reason


def test_dp_metric_keys_required_on_request():
    initial = make_adapter(rank=2, seed=5)
    strategy = _strategy(require_dp_metrics=True)
    msgs = _configure(strategy, [1, 2], initial)
    metrics = default_metrics()
    del metrics["epsilon"]
    replies = [make_reply(msgs[1], _trained(msgs[1], 1), metrics=metrics), make_reply(msgs[2], _trained(msgs[2], 2))]
    strategy.aggregate_train(1, replies)
    assert strategy.rejections[1] == [(1, "missing metric keys: epsilon")]
    # Without the option, the base key (num-examples) suffices: under DP the losses stay on the device.
    lenient = _strategy()
    msgs = _configure(lenient, [1], initial)
    lenient.aggregate_train(1, [make_reply(msgs[1], _trained(msgs[1], 1), metrics={"num-examples": 3})])
    assert lenient.accepted[1] == [1]


def test_check_arrays_payload_cap_is_checked_before_decoding():
    template = template_of({"k.lora_A.weight": np.zeros((4, 8), np.float32)})
    garbage = Array(dtype="float32", shape=(4, 8), stype="numpy.ndarray", data=b"\x00" * 10_000)
    content = RecordDict({"arrays": ArrayRecord({"k.lora_A.weight": garbage}), "metrics": MetricRecord({"num-examples": 1})})
    with pytest.raises(Exception, match="over the cap"):
        check_arrays(content, template, ValidationPolicy())
    small = Array(dtype="float32", shape=(4, 8), stype="numpy.ndarray", data=b"\x00" * 100)
    content = RecordDict({"arrays": ArrayRecord({"k.lora_A.weight": small})})
    with pytest.raises(Exception, match="undecodable"):
        check_arrays(content, template, ValidationPolicy())


def test_evaluate_aggregation_skips_bad_replies():
    initial = make_adapter(rank=2, seed=6)
    strategy = _strategy()
    msgs = strategy.configure_evaluate(1, ArrayRecord({k: Array(v) for k, v in initial.items()}), ConfigRecord({}), FakeGrid([1, 2, 3]))
    by_node = {m.metadata.dst_node_id: m for m in msgs}

    def reply(node, metrics, client=None):
        client = client if client is not None else {"client-id": f"client-{node}", "server-round": 1}
        return Message(RecordDict({"metrics": MetricRecord(metrics), "client": ConfigRecord(client)}), reply_to=by_node[node])

    good = [reply(n, {"eval_loss": float(n), "num-examples": n}) for n in (1, 2)]
    bad = reply(3, {"eval_loss": float("nan"), "num-examples": 3})
    result = strategy.aggregate_evaluate(1, [*good, bad])
    assert result["eval_loss"] == pytest.approx((1 * 1 + 2 * 2) / 3)
    assert result["num-examples"] == 3
    assert [n for n, _ in strategy.eval_rejections[1]] == [3]

    # Round 2: node 3 now claims node 1's client id, node 2 answers round 1 (stale), node 1 sends no
    # client record: only what the validator accepts counts, and nothing with fewer replies than the minimum.
    strategy.min_evaluate_replies = 2
    msgs = strategy.configure_evaluate(2, ArrayRecord({k: Array(v) for k, v in initial.items()}), ConfigRecord({}), FakeGrid([1, 2, 3]))
    by_node = {m.metadata.dst_node_id: m for m in msgs}
    forged = reply(3, {"eval_loss": 0.0, "num-examples": 1}, {"client-id": "client-1", "server-round": 2})
    stale = reply(2, {"eval_loss": 0.0, "num-examples": 1}, {"client-id": "client-2", "server-round": 1})
    no_client = Message(RecordDict({"metrics": MetricRecord({"eval_loss": 0.0, "num-examples": 1})}), reply_to=by_node[1])
    assert strategy.aggregate_evaluate(2, [forged, stale, no_client]) is None
    reasons = dict(strategy.eval_rejections[2])
    assert "belongs to node 1" in reasons[3] and "stale" in reasons[2] and "'client'" in reasons[1]
    report = strategy.phase_report("evaluate", 2)
    assert not report.aggregated and not report.accepted and "min-evaluate-nodes" in report.note


def test_client_ids_are_bound_to_the_node_that_presented_them_first():
    from strategies.validation import ClientBindings, ReplyRejected, check_client_id

    bindings = ClientBindings()
    bindings.bind(1, "alice")
    assert bindings.conflict(1, "alice") is None and bindings.conflict(2, "bob") is None
    assert "belongs to node 1" in bindings.conflict(2, "alice")
    assert "presented client-id 'alice' before" in bindings.conflict(1, "mallory")
    bindings.bind(2, "alice")  # refused: nothing changes
    assert bindings.node_of == {"alice": 1} and bindings.client_of == {1: "alice"}
    assert check_client_id("hospital-00_x.y") == "hospital-00_x.y"
    for bad, fragment in ((None, "missing"), ("", "missing"), ("a\nb", "control characters"), ("x" * 257, "257 characters")):
        with pytest.raises(ReplyRejected, match=fragment):
            check_client_id(bad)


def test_sampling_and_aggregation_follow_client_ids_not_node_ids():
    """Two runs whose nodes got different ids sample the same clients and aggregate bit-identically."""
    initial = make_adapter(rank=2, seed=7)
    results = []
    for node_ids in ([10, 20, 30, 40], [400, 30, 2000, 1]):
        clients = dict(zip(node_ids, ["c-a", "c-b", "c-c", "c-d"]))
        strategy = FedAvgLora(fraction_train=0.5, min_train_nodes=2, min_available_nodes=1, min_evaluate_nodes=1, seed=3)
        for node, client in clients.items():
            strategy.bindings.bind(node, client)
        msgs = _configure(strategy, node_ids, initial)
        sampled = [clients[n] for n in msgs]
        replies = [make_reply(m, _trained(m, seed=int(clients[n][-1], 16)), client_id=clients[n], num_examples=3) for n, m in msgs.items()]
        arrays, _ = strategy.aggregate_train(1, replies[::-1])
        results.append((sampled, {k: v.data for k, v in arrays.items()}))
    assert results[0] == results[1]
