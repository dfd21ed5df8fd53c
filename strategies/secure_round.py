"""One secure-aggregation train round on Flower's Message API, for any fedpriv strategy.

The round loop (``server/rounds.py``) owns the grid and the timeout and hands the strategy a
``send`` (one exchange: instructions out, the replies that came back in time). A secure round is
four exchanges, driven by :class:`strategies.secagg.SecAggServer`:

1. **setup** = the round's train instructions (per node: its arrays and config, as in a plaintext
   round) with a ``"secagg"`` record: the SecAgg+ parameters and the :class:`UpdatePlan` (update
   space, L2 clip, weighting). The device trains and answers with its metrics, its client record
   and two public keys, never with arrays; the replies are validated like plaintext train replies
   (sender, round, client id and its binding, metrics, ε floor) and any arrays are refused;
2. **share-keys**, 3. **masked-input**, 4. **unmask**: the protocol's messages (a ``"secagg"``
   record and the round number), each reply validated by ``SecAggServer``.

An error reply, a reply that fails validation and a node that does not answer in time are
dropouts of that stage. The server holds masked vectors only as their running sum and unmasks the
sum; ``SecAggResult.weighted_sum`` is Σ w_i·x̂_i over the survivors. The round aborts (nothing of
it is released, ``SecureOutcome.result`` is None) when fewer nodes than ``min_survivors`` are
sampled or get through a stage, when some neighbourhood falls below the threshold, or when the
unmasked total weight differs from the survivors' reported num-examples (a device that lied about
its weight inside the masked vector). What the round did is kept in ``SecureOutcome.record`` for
``metrics.json``: participants, dropouts before and after key sharing, dropouts recovered, bytes
sent and received per client, the graph and the quantization (range, grid, modulus, error bounds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any, Protocol

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.common import log

from fedpriv.secagg.errors import SecAggAborted
from fedpriv.secagg.layout import VectorLayout
from fedpriv.secagg.messages import MASKED_INPUT, SETUP, SHARE_KEYS
from fedpriv.secagg.quantization import DEFAULT_MAX_WEIGHT, QuantizationSpec
from fedpriv.secagg.update import SECAGG_RECORD, UpdatePlan
from strategies.secagg import Reply, SecAggResult, SecAggServer
from strategies.validation import ArraySpec, ValidReply

Send = Callable[[list[Message]], list[Message]]


class ValidatingStrategy(Protocol):
    """What a secure round needs of the strategy (``strategies.base.LoraStrategy``): its train-reply
    validation and the client ids it knows."""

    node_client_ids: dict[int, str]

    def validate_replies(self, server_round: int, replies: Iterable[Message]) -> list[ValidReply]: ...


def content_bytes(content: RecordDict) -> int:
    """Payload bytes of a message's records, as Flower's ``count_bytes`` counts them (values, not
    the framing), except that an empty bytes value counts 0 (Flower's ConfigRecord raises on it)."""
    total = 0
    for record in content.values():
        if not isinstance(record, ConfigRecord):
            total += record.count_bytes()
            continue
        for key, value in record.items():
            total += len(key)
            for item in value if isinstance(value, list) else [value]:
                total += 1 if isinstance(item, bool) else len(item) if isinstance(item, str | bytes) else 8
    return total


def plan_for(space: Mapping[str, ArraySpec], l2_bound: float | None, weighting: str) -> UpdatePlan:
    layout = VectorLayout(tuple(space), tuple(spec.shape for spec in space.values()))
    return UpdatePlan(layout, float(l2_bound or 0.0), weighting)


def quantization_range(plan: UpdatePlan, configured: float | None) -> float:
    """The coordinate range c: as configured, else the L2 bound (a vector of L2 norm ≤ S has every
    coordinate in [−S, S], so nothing is clipped), else 1."""
    if configured:
        return float(configured)
    return plan.l2_bound if plan.l2_bound > 0 else 1.0


@dataclass
class SecureOutcome:
    plan: UpdatePlan
    valid: list[ValidReply]  # validated setup replies: the devices that trained
    result: SecAggResult | None = None  # None: aborted, nothing of the round may be released
    abort_reason: str = ""
    record: dict[str, Any] = field(default_factory=dict)  # for metrics.json (round → "secure_aggregation")
    bytes_sent: dict[int, int] = field(default_factory=dict)  # node → bytes it sent over the stages

    @property
    def num_rejected(self) -> int:
        return int(self.record.get("setup_rejected", 0))

    def sum_update(self) -> dict[str, np.ndarray]:
        """Σ w_i·x̂_i over the survivors, per tensor (zeros after an abort: the sum of nobody)."""
        if self.result is None:
            return self.plan.layout.unflatten(np.zeros(self.plan.layout.size))
        return self.plan.layout.unflatten(self.result.weighted_sum)

    def mean_update(self) -> dict[str, np.ndarray]:
        if self.result is None:
            raise ValueError("an aborted secure round has no mean")
        return self.plan.layout.unflatten(self.result.mean())

    def metrics(self) -> dict[str, float | int]:
        """Numbers for the round's MetricRecord."""
        out: dict[str, float | int] = {"secagg-aborted": int(self.result is None)}
        if self.result is not None:
            out.update(self.result.metrics())
        return out


# pylint: disable=too-many-arguments,too-many-locals
def run_secure_round(
    strategy: ValidatingStrategy,
    server_round: int,
    messages: list[Message],
    send: Send,
    plan: UpdatePlan,
    *,
    coordinate_range: float,
    min_survivors: int,
    min_trained: int = 1,
) -> SecureOutcome:
    """Run the four stages for the train instructions ``messages`` (from
    ``strategy.build_train_messages``). ``min_trained``: valid setup replies needed to go on (the
    strategy's min-train-nodes; client-level DP passes 1, it releases the noise all the same)."""
    nodes = sorted(int(m.metadata.dst_node_id) for m in messages)
    label = _labeller(strategy)
    record: dict[str, Any] = {"participants": len(nodes), "weighting": plan.weighting, "l2_bound": plan.l2_bound}
    outcome = SecureOutcome(plan, [], record=record)
    minimum = max(2, min_survivors)
    if len(nodes) < minimum:
        strategy.validate_replies(server_round, [])  # an empty train report: nothing was sent
        _aborted(outcome, f"{len(nodes)} nodes sampled, a secure round needs at least {minimum} (the sum of one "
                          "is its update): no instruction sent")
        _summarize(outcome, None, nodes, label, {}, {}, [])
        return outcome
    weight_cap = 1 if plan.weighting == "uniform" else DEFAULT_MAX_WEIGHT
    spec = QuantizationSpec.for_clients(len(nodes), coordinate_range, max_weight=weight_cap)
    server = SecAggServer(server_round, nodes, plan.layout.size, spec, min_survivors=minimum)
    record.update({"degree": server.graph.degree, "threshold": server.threshold, "quantization": spec.describe()})
    sent: dict[int, int] = dict.fromkeys(nodes, 0)
    received: dict[int, int] = dict.fromkeys(nodes, 0)
    failures: list[str] = []

    def exchange(stage: str, outgoing: list[Message]) -> list[Message]:
        for message in outgoing:
            received[int(message.metadata.dst_node_id)] += content_bytes(message.content)
        replies = send(outgoing)
        answered = sum(1 for r in replies if not r.has_error())
        log(INFO, "secure aggregation: round %d, %s: %d of %d nodes answered", server_round, stage, answered, len(outgoing))
        for reply in replies:
            node = int(reply.metadata.src_node_id)
            if node in sent and not reply.has_error():
                sent[node] += content_bytes(reply.content)
            if reply.has_error() and stage != SETUP:  # setup failures are in the train report already
                failures.append(f"{stage}: {label(node)}: error reply: {reply.error.reason}")
        return replies

    try:
        setup_fields = {**server.setup_requests()[nodes[0]].to_fields(), **plan.to_fields()}
        for message in messages:
            message.content[SECAGG_RECORD] = ConfigRecord(dict(setup_fields))
        replies = exchange(SETUP, messages)
        valid = strategy.validate_replies(server_round, replies)  # metrics, client ids, ε floor; arrays refused
        outcome.valid = valid
        record["setup_rejected"] = len(replies) - len(valid)
        if len(valid) < min_trained:
            raise SecAggAborted(f"{len(valid)} valid of {len(nodes)} sampled, fewer than the {min_trained} needed "
                                "(min-train-nodes)")
        server.receive_advertise([(r.node_id, _fields(r.message)) for r in valid])
        for stage, requests, receive in server.stages()[1:]:
            outgoing = [_stage_message(node, request.to_fields(), server_round) for node, request in requests().items()]
            receive(_secagg_replies(exchange(stage, outgoing), server_round))
        result = server.finish()
        _check_weights(result, valid, plan, spec)
        outcome.result = result
    except SecAggAborted as err:
        reason = f"secure aggregation aborted: {server.abort_reason}" if server.abort_reason else str(err)
        _aborted(outcome, reason)
    _summarize(outcome, server, nodes, label, sent, received, failures)
    if outcome.result is not None:
        log(INFO, "secure aggregation: round %d, %d of %d in the sum, %d dropouts recovered", server_round,
            len(outcome.result.survivors), len(nodes), len(outcome.result.dropouts_recovered))
    return outcome


def _aborted(outcome: SecureOutcome, reason: str) -> SecureOutcome:
    outcome.result = None
    outcome.abort_reason = reason
    outcome.record.update({"aborted": True, "abort_reason": reason})
    log(WARNING, "secure aggregation aborted: %s", reason)
    return outcome


def _check_weights(result: SecAggResult, valid: list[ValidReply], plan: UpdatePlan, spec: QuantizationSpec) -> None:
    """The unmasked total weight must be what the survivors' reported num-examples give: a device
    cannot weigh itself up inside its masked vector without the round noticing."""
    reported = {r.node_id: r.num_examples for r in valid}
    expected = sum(plan.weight(reported[s], spec) for s in result.survivors)
    if result.total_weight != expected:
        raise SecAggAborted(f"secure aggregation aborted: the unmasked total weight {result.total_weight} differs from "
                            f"the {expected} the survivors' num-examples give (a masked input carries a false weight)")


def _fields(message: Message) -> dict[str, Any]:
    record = message.content.config_records.get(SECAGG_RECORD) if message.has_content() else None
    return dict(record) if record is not None else {}  # missing fields: the server rejects the reply


def _stage_message(node_id: int, fields: dict[str, Any], server_round: int) -> Message:
    content = RecordDict({SECAGG_RECORD: ConfigRecord(fields), "config": ConfigRecord({"server-round": server_round})})
    return Message(content=content, message_type=MessageType.TRAIN, dst_node_id=node_id, group_id=str(server_round))


def _secagg_replies(replies: Iterable[Message], server_round: int) -> list[Reply]:
    """(sender, fields) of every reply that is not an error; a reply of another type or round
    carries no fields, so the server rejects it with the reason."""
    out: list[Reply] = []
    for reply in replies:
        if reply.has_error():
            continue
        ok = reply.metadata.message_type == MessageType.TRAIN and reply.metadata.group_id == str(server_round)
        out.append((int(reply.metadata.src_node_id), _fields(reply) if ok else {}))
    return out


def _labeller(strategy: ValidatingStrategy) -> Callable[[int], str]:
    return lambda node: strategy.node_client_ids.get(node) or f"node {node}"


def _summarize(outcome: SecureOutcome, server: SecAggServer | None, nodes: list[int], label: Callable[[int], str],
               sent: dict[int, int], received: dict[int, int], failures: list[str]) -> None:
    progress = server.progress if server is not None else {}
    shared = set(progress.get(SHARE_KEYS, []))
    masked = set(progress.get(MASKED_INPUT, []))
    result = outcome.result
    outcome.bytes_sent = dict(sent)
    outcome.record.update({
        "aborted": result is None,
        "advertised_keys": len(progress.get(SETUP, [])),
        "shared_keys": len(shared),
        "masked_inputs": len(masked),
        "in_sum": len(result.survivors) if result is not None else 0,
        "dropouts_before_key_sharing": sorted(label(n) for n in nodes if n not in shared),
        "dropouts_after_key_sharing": sorted(label(n) for n in shared - masked) if MASKED_INPUT in progress else [],
        "dropouts_recovered": len(result.dropouts_recovered) if result is not None else 0,
        "bytes_sent": dict(sorted((label(n), sent.get(n, 0)) for n in nodes)),  # by each client, over the four stages
        "bytes_received": dict(sorted((label(n), received.get(n, 0)) for n in nodes)),
        "rejected": [f"{r.stage}: {label(r.node_id)}: {r.reason}" for r in server.rejections] if server is not None else [],
        "failures": failures,
    })
    if result is not None:
        # per coordinate, against the devices' updates clipped to the L2 bound: rounding plus the clip margin
        per_input = outcome.plan.error_bound(result.quantization)
        outcome.record.update({"clip_margin": outcome.plan.clip_margin(result.quantization),
                               "sum_error_bound": result.total_weight * per_input, "mean_error_bound": per_input,
                               "total_weight": result.total_weight})


def patch_upload_bytes(report: Any, outcome: SecureOutcome) -> None:
    """The train report's per-client upload: what each device sent over the four stages."""
    report.accepted = [dataclasses.replace(a, upload_bytes=int(outcome.bytes_sent.get(a.node_id, 0))) for a in report.accepted]
