"""No reply can stop the server or reach metrics.json: every malformed or forged reply of issue 18
item 4, sent through a whole federation (`run_federation` over a fake grid of fedpriv-like devices).

Each case replaces one device's honest reply (or adds one) with a bad one carrying sentinel values;
the run must finish (report.md written), metrics.json must be strict JSON, the bad reply must be
listed with its reason, and none of its sentinels may appear in the record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MessageType, MetricRecord

from fedpriv.config import RunConfig
from server.server_app import run_federation
from strategies.base import decode_record, to_array_record
from tests.server.fake_federation import FakeFederation, client_record, forged

SENTINEL_LOSS = 123.456  # a forged train_loss
SENTINEL_EPSILON = 0.000777  # a forged, too-low ε
SENTINEL_PPL = 654.321  # a forged perplexity
CLIENTS = ["c0", "c1", "c2"]


def strict_json(path: Path) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"{path.name} is not strict JSON: {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _round(message: Message) -> int:
    return int(message.content["config"]["server-round"])


def _train_parts(reply: Message) -> tuple[dict, dict, dict]:
    content = reply.content
    return decode_record(content["arrays"]), dict(content["metrics"]), dict(content["client"])


def _forged_metrics(reply: Message) -> dict:
    _, metrics, _ = _train_parts(reply)
    return {**metrics, "train_loss": SENTINEL_LOSS, "epsilon": SENTINEL_EPSILON}


def _train_case(build: Callable[[Message, Message], list[Message]]):
    """Replace c1's round-1 train reply with what `build(instruction, honest_reply)` returns."""
    def tamper(message: Message, reply: Message, client_id: str) -> list[Message]:
        if client_id == "c1" and message.metadata.message_type == MessageType.TRAIN and _round(message) == 1:
            return build(message, reply)
        return [reply]
    return tamper


def _evaluate_case(build: Callable[[Message, Message], list[Message]]):
    def tamper(message: Message, reply: Message, client_id: str) -> list[Message]:
        if client_id == "c1" and message.metadata.message_type == MessageType.EVALUATE and _round(message) == 1:
            return build(message, reply)
        return [reply]
    return tamper


def _without(reply: Message, message: Message, key: str) -> list[Message]:
    arrays, metrics, client = _train_parts(reply)
    content = {"arrays": to_array_record(arrays), "metrics": MetricRecord({**metrics, "train_loss": SENTINEL_LOSS,
                                                                             "epsilon": SENTINEL_EPSILON}),
               "client": ConfigRecord(client)}
    del content[key]
    return [forged(message, content)]


def _with(message: Message, reply: Message, *, arrays=None, metrics=None, client=None) -> list[Message]:
    honest_arrays, _, honest_client = _train_parts(reply)
    return [forged(message, {
        "arrays": arrays if arrays is not None else to_array_record(honest_arrays),
        "metrics": metrics if metrics is not None else MetricRecord(_forged_metrics(reply)),
        "client": client if client is not None else ConfigRecord(honest_client),
    })]


def _reshaped(reply: Message) -> ArrayRecord:
    arrays, _, _ = _train_parts(reply)
    key = next(iter(arrays))
    return to_array_record({**arrays, key: np.zeros((3, 3), np.float32)})


TRAIN_CASES = {
    "no client record": (_train_case(lambda m, r: _without(r, m, "client")), "missing 'client' ConfigRecord"),
    "no metrics record": (_train_case(lambda m, r: _without(r, m, "metrics")), "missing 'metrics' MetricRecord"),
    "no client-id": (_train_case(lambda m, r: _with(m, r, client=ConfigRecord({"server-round": 1}))), "missing 'client-id'"),
    "no delta under record-level DP": (
        _train_case(lambda m, r: _with(m, r, metrics=MetricRecord({k: v for k, v in _forged_metrics(r).items() if k != "delta"}))),
        "missing metric keys: delta"),
    "a metric sent as a string": (
        _train_case(lambda m, r: _with(m, r, metrics=ConfigRecord({**_forged_metrics(r), "epsilon": "seven"}))),
        "missing 'metrics' MetricRecord"),
    "NaN metric": (_train_case(lambda m, r: _with(m, r, metrics=MetricRecord({**_forged_metrics(r), "train_loss": float("nan")}))),
                   "'train_loss' is NaN"),
    "wrong shape": (_train_case(lambda m, r: _with(m, r, arrays=_reshaped(r))), "shape"),
    "extra key": (_train_case(lambda m, r: _with(m, r, arrays=to_array_record({**_train_parts(r)[0], "extra.weight": np.zeros(2, np.float32)}))),
                  "unexpected keys"),
    "duplicate": (_train_case(lambda m, r: [r, *_with(m, r)]), "second reply from the same node"),
    "stale": (_train_case(lambda m, r: _with(m, r, client=client_record("c1", 0))), "stale round"),
}


def _not_sampled_forger(message: Message, reply: Message, client_id: str) -> list[Message]:
    """After c1's accepted round-1 reply, a node that was not sampled sends c1's id with a tiny ε."""
    if client_id == "c1" and message.metadata.message_type == MessageType.TRAIN and _round(message) == 2:
        return [reply, forged(message, _with(message, reply)[0].content, src_node_id=999)]
    return [reply]


def _binding_forger(message: Message, reply: Message, client_id: str) -> list[Message]:
    """In round 2 c1's reply is lost, and the node of c2 (sampled, so its reply passes the sender
    check) sends its update under c1's id, which the identify step bound to c1's node."""
    if message.metadata.message_type == MessageType.TRAIN and _round(message) == 2:
        if client_id == "c1":
            return []
        if client_id == "c2":
            return _with(message, reply, client=client_record("c1", 2))
    return [reply]


def _error_reply(message: Message, reply: Message, client_id: str) -> list[Message]:
    if client_id == "c1" and message.metadata.message_type == MessageType.TRAIN and _round(message) == 1:
        return [Message(Error(code=0, reason="the ClientApp raised"), reply_to=message)]
    return [reply]


def _eval_with(message: Message, *, metrics=None, client=None, drop: str = "") -> list[Message]:
    content = {"metrics": metrics if metrics is not None else MetricRecord({"eval_loss": 1.0, "eval_perplexity": SENTINEL_PPL,
                                                                             "num-examples": 4}),
               "client": client if client is not None else client_record("c1", _round(message))}
    content.pop(drop, None)
    return [forged(message, content)]


EVALUATE_CASES = {
    "evaluate: no client record": (_evaluate_case(lambda m, r: _eval_with(m, drop="client")), "missing 'client' ConfigRecord"),
    "evaluate: no metrics record": (_evaluate_case(lambda m, r: _eval_with(m, drop="metrics")), "missing 'metrics' MetricRecord"),
    "evaluate: no client-id": (_evaluate_case(lambda m, r: _eval_with(m, client=ConfigRecord({"server-round": 1}))), "missing 'client-id'"),
    "evaluate: a metric sent as a string": (
        _evaluate_case(lambda m, r: _eval_with(m, metrics=ConfigRecord({"eval_perplexity": "654.321", "num-examples": 4}))),
        "missing 'metrics' MetricRecord"),
    "evaluate: NaN metric": (
        _evaluate_case(lambda m, r: _eval_with(m, metrics=MetricRecord({"eval_loss": float("nan"), "eval_perplexity": SENTINEL_PPL,
                                                                         "num-examples": 4}))), "is NaN"),
    "evaluate: another client's id": (_evaluate_case(lambda m, r: _eval_with(m, client=client_record("c0", 1))), "client-id 'c0'"),
}


def _run(tmp_path: Path, tamper, reverse_arrivals: bool = False, **config) -> tuple[dict, str, FakeFederation]:
    out = tmp_path / "run"
    run_config = RunConfig(num_clients=len(CLIENTS), rounds=2, out=str(out), **config).validated()
    grid = FakeFederation(CLIENTS, tamper=tamper, reverse_arrivals=reverse_arrivals)
    run_federation(grid, run_config)
    assert (out / "report.md").is_file(), "the run did not finish"
    return strict_json(out / "metrics.json"), (out / "metrics.json").read_text(), grid


def _assert_clean(text: str) -> None:
    for sentinel in (SENTINEL_LOSS, SENTINEL_EPSILON, SENTINEL_PPL):
        assert repr(sentinel) not in text, f"a rejected reply's value {sentinel} reached metrics.json"
    assert "seven" not in text


@pytest.mark.parametrize("case", sorted(TRAIN_CASES))
def test_bad_train_reply_is_rejected_and_never_recorded(tmp_path: Path, case: str) -> None:
    tamper, reason = TRAIN_CASES[case]
    metrics, text, _ = _run(tmp_path, tamper)
    first = metrics["rounds"][0]
    assert any(reason in r for r in first["rejected"]), first["rejected"]
    _assert_clean(text)
    c1 = {c["client_id"]: c for c in first["clients"]}.get("c1", {})
    if case != "duplicate":  # the duplicate's first (honest) reply is accepted
        assert not c1.get("trained") and "train_loss" not in c1, c1
        assert "c1" not in first["upload_bytes"]
    # c1 trains honestly in round 2, so its recorded ε is exactly what its device reported then.
    assert metrics["privacy"]["record_level"]["c1"]["epsilon"] == pytest.approx(0.3 * 10**0.5)


@pytest.mark.parametrize("case", sorted(EVALUATE_CASES))
def test_bad_evaluate_reply_is_rejected_and_never_recorded(tmp_path: Path, case: str) -> None:
    tamper, reason = EVALUATE_CASES[case]
    metrics, text, _ = _run(tmp_path, tamper)
    first = metrics["rounds"][0]
    assert any(reason in r and "(evaluate)" in r for r in first["rejected"]), first["rejected"]
    _assert_clean(text)
    c1 = {c["client_id"]: c for c in first["clients"]}["c1"]  # its train reply was fine
    assert "eval_perplexity" not in c1 and c1["trained"]


def test_a_node_not_sampled_cannot_lower_a_clients_epsilon(tmp_path: Path) -> None:
    metrics, text, _ = _run(tmp_path, _not_sampled_forger)
    second = metrics["rounds"][1]
    assert any(r.startswith("node 999:") and "not sent a train instruction" in r for r in second["rejected"])
    _assert_clean(text)
    assert metrics["privacy"]["record_level"]["c1"]["epsilon"] == pytest.approx(0.3 * 10**0.5)


def test_a_client_id_stays_with_the_node_that_presented_it_first(tmp_path: Path) -> None:
    metrics, text, grid = _run(tmp_path, _binding_forger)
    second = metrics["rounds"][1]
    node_c1, node_c2 = grid.node_of("c1"), grid.node_of("c2")
    assert second["rejected"] == [f"node {node_c2}: client-id 'c1' belongs to node {node_c1}, which presented it first"]
    _assert_clean(text)
    entries = {c["client_id"]: c for c in second["clients"]}
    assert not entries["c1"]["trained"] and not entries["c2"]["trained"]
    assert metrics["privacy"]["record_level"]["c1"]["epsilon"] == pytest.approx(0.3 * 5**0.5)  # round 1's, its own
    assert second["dropouts"]["train"] == [{"node_id": node_c1, "client_id": "c1"}]


def test_a_sampled_node_cannot_take_another_clients_id_even_when_its_reply_arrives_first(tmp_path: Path) -> None:
    def claim_c0(message: Message, reply: Message, client_id: str) -> list[Message]:
        if client_id == "c1" and message.metadata.message_type == MessageType.TRAIN and _round(message) == 1:
            return _with(message, reply, client=client_record("c0", 1))
        return [reply]

    metrics, text, grid = _run(tmp_path, claim_c0, reverse_arrivals=True)  # c1's forgery arrives before c0's reply
    first = metrics["rounds"][0]
    assert [r.split(":")[0] for r in first["rejected"]] == [f"node {grid.node_of('c1')}"]  # the forger, not c0
    _assert_clean(text)
    entries = {c["client_id"]: c for c in first["clients"]}
    assert entries["c0"]["epsilon"] == pytest.approx(0.3 * 5**0.5) and not entries["c1"]["trained"]


def test_a_client_cannot_report_a_lower_epsilon_than_before(tmp_path: Path) -> None:
    """Record-level ε only grows; a lower one (a reset ledger, a replay) is refused and the record keeps the higher."""
    def reset_ledger(message: Message, reply: Message, client_id: str) -> list[Message]:
        if client_id == "c1" and message.metadata.message_type == MessageType.TRAIN and _round(message) == 2:
            arrays, metrics, client = _train_parts(reply)
            return [forged(message, {"arrays": to_array_record(arrays), "metrics": MetricRecord({**metrics, "epsilon": 0.1}),
                                     "client": ConfigRecord(client)})]
        return [reply]

    metrics, _, grid = _run(tmp_path, reset_ledger)
    (reason,) = metrics["rounds"][1]["rejected"]
    assert reason.startswith(f"node {grid.node_of('c1')}: epsilon 0.1 is below the 0.67082")
    assert metrics["privacy"]["record_level"]["c1"]["epsilon"] == pytest.approx(0.3 * 5**0.5)


def test_an_error_reply_is_a_failure_not_a_rejection(tmp_path: Path) -> None:
    metrics, _, grid = _run(tmp_path, _error_reply)
    first = metrics["rounds"][0]
    assert first["failures"] == [f"node {grid.node_of('c1')}: error reply (code 0): the ClientApp raised"]
    assert first["rejected"] == []
    assert first["replies"]["train"]["failed"] == 1
    assert not first["replies"]["train"]["aggregated"]  # a hospital round needs every hospital's update


def test_infinite_epsilon_is_written_as_valid_json(tmp_path: Path) -> None:
    def no_guarantee(message: Message, reply: Message, client_id: str) -> list[Message]:
        if client_id == "c2" and message.metadata.message_type == MessageType.TRAIN:
            arrays, metrics, client = _train_parts(reply)
            return [forged(message, {"arrays": to_array_record(arrays), "metrics": MetricRecord({**metrics, "epsilon": float("inf")}),
                                     "client": ConfigRecord(client)})]
        return [reply]

    metrics, text, _ = _run(tmp_path, no_guarantee)
    assert "Infinity" not in text
    assert metrics["privacy"]["record_level"]["c2"]["epsilon"] == "inf"
    from server.run_record import load_metrics

    assert load_metrics(tmp_path / "run" / "metrics.json")["privacy"]["record_level"]["c2"]["epsilon"] == float("inf")
