"""Validation of train replies before anything touches the aggregate.

A reply is checked against the *template* of what the server expects back from that node (the
shapes/dtypes of the arrays it was sent, restricted to the keys the mode shares; for hetlora the
node's own rank). Checks, in order (the first failing one is the recorded reason):

1. error reply (``msg.has_error()``) / no content
2. sender: not sampled this round, or a second reply from the same node in the round
3. message type is not ``train``; ``group_id`` of another round
4. ``"client"`` ConfigRecord: missing, no ``client-id``, ``server-round`` != current round
   (stale), ``client-id`` already seen from another node this round
5. ``"metrics"`` MetricRecord: missing, missing required keys, non-numeric required values,
   NaN anywhere, inf outside ``allow_inf_metrics``, ``num-examples`` <= 0 or > cap
6. ``"arrays"`` ArrayRecord: missing, missing / extra keys, wrong declared dtype / shape, total
   payload (all ArrayRecords of the reply) over the size cap — all before decoding anything —
   then undecodable data, decoded dtype / shape that differ from the declared ones, non-finite
   values (NaN / inf)

Nothing here mutates a message. A valid reply is returned as a :class:`ValidReply` holding the
decoded arrays, so aggregation never decodes twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord

NUMPY_STYPE = "numpy.ndarray"

# Always present in a fedpriv train reply.
BASE_REQUIRED_METRICS: tuple[str, ...] = ("train_loss", "num-examples")
# Present when the client trains with record-level DP (DP-SGD).
DP_REQUIRED_METRICS: tuple[str, ...] = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps")


@dataclass(frozen=True)
class ArraySpec:
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


Template = Mapping[str, ArraySpec]


def template_of(arrays: Mapping[str, np.ndarray]) -> dict[str, ArraySpec]:
    """The expected reply template for a dict of numpy arrays (keeps key order)."""
    return {k: ArraySpec(tuple(int(s) for s in v.shape), str(v.dtype)) for k, v in arrays.items()}


def payload_cap(template: Template, slack: float = 0.05, per_array_overhead: int = 1024) -> int:
    """Default size cap: the exact tensor bytes, +5 %, + 1 KiB per array for the .npy header."""
    raw = sum(spec.nbytes for spec in template.values())
    return int(raw * (1.0 + slack)) + per_array_overhead * (len(template) + 1)


@dataclass(frozen=True)
class ValidationPolicy:
    """What a reply must satisfy besides matching its template."""

    required_metrics: tuple[str, ...] = BASE_REQUIRED_METRICS
    weighted_by_key: str = "num-examples"
    max_num_examples: int = 10_000_000
    max_payload_bytes: int | None = None  # None: payload_cap(template) per node
    allow_inf_metrics: tuple[str, ...] = ("epsilon",)  # a non-DP client may report epsilon = inf
    arrays_key: str = "arrays"
    metrics_key: str = "metrics"
    client_key: str = "client"
    strict_senders: bool = True  # reject replies from nodes that were not sent an instruction


@dataclass
class ValidReply:
    node_id: int
    client_id: str
    num_examples: float
    arrays: dict[str, np.ndarray]
    metrics: dict[str, Any]
    client: dict[str, Any]
    message: Message = field(repr=False)


class ReplyRejected(Exception):
    """A reply failed validation; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shorten(keys: Iterable[str], limit: int = 3) -> str:
    keys = sorted(keys)
    text = ", ".join(keys[:limit])
    return text + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def check_metrics(metrics: Any, policy: ValidationPolicy) -> tuple[dict[str, Any], float]:
    """Check the reply's MetricRecord; return (metrics as dict, num-examples)."""
    if not isinstance(metrics, MetricRecord):
        raise ReplyRejected(f"missing '{policy.metrics_key}' MetricRecord")
    missing = [k for k in policy.required_metrics if k not in metrics]
    if policy.weighted_by_key not in metrics and policy.weighted_by_key not in missing:
        missing.append(policy.weighted_by_key)
    if missing:
        raise ReplyRejected(f"missing metric keys: {_shorten(missing)}")
    for key, value in metrics.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not _is_number(v):
                raise ReplyRejected(f"metric '{key}' is not numeric")
            if isinstance(v, float) and math.isnan(v):
                raise ReplyRejected(f"metric '{key}' is NaN")
            if isinstance(v, float) and math.isinf(v) and key not in policy.allow_inf_metrics:
                raise ReplyRejected(f"metric '{key}' is infinite")
    for key in policy.required_metrics:
        if isinstance(metrics[key], list):
            raise ReplyRejected(f"metric '{key}' must be a scalar")
    num = metrics[policy.weighted_by_key]
    if isinstance(num, list) or not _is_number(num) or not math.isfinite(num):
        raise ReplyRejected(f"'{policy.weighted_by_key}' must be a finite number")
    if num <= 0:
        raise ReplyRejected(f"non-positive '{policy.weighted_by_key}' ({num})")
    if num > policy.max_num_examples:
        raise ReplyRejected(f"'{policy.weighted_by_key}' {num} over the cap {policy.max_num_examples}")
    return dict(metrics), float(num)


def check_arrays(content: Any, template: Template, policy: ValidationPolicy) -> dict[str, np.ndarray]:
    """Check the reply's arrays against ``template``; return the decoded arrays (template order)."""
    record = content.get(policy.arrays_key) if hasattr(content, "get") else None
    if not isinstance(record, ArrayRecord):
        raise ReplyRejected(f"missing '{policy.arrays_key}' ArrayRecord")
    keys = set(record.keys())
    expected = set(template.keys())
    if keys != expected:
        parts = []
        if expected - keys:
            parts.append(f"missing keys: {_shorten(expected - keys)}")
        if keys - expected:
            parts.append(f"unexpected keys: {_shorten(keys - expected)}")
        raise ReplyRejected("; ".join(parts))
    for key, spec in template.items():  # declared metadata first: cheap, nothing decoded
        arr: Array = record[key]
        if arr.stype != NUMPY_STYPE:
            raise ReplyRejected(f"'{key}': unsupported serialization {arr.stype!r}")
        if str(arr.dtype) != spec.dtype:
            raise ReplyRejected(f"'{key}': dtype {arr.dtype} != expected {spec.dtype}")
        if tuple(arr.shape) != spec.shape:
            raise ReplyRejected(f"'{key}': shape {tuple(arr.shape)} != expected {spec.shape}")
    # Size before decoding: every array in every ArrayRecord of the content counts.
    cap = policy.max_payload_bytes if policy.max_payload_bytes is not None else payload_cap(template)
    total = sum(len(arr.data) for rec in content.array_records.values() for arr in rec.values())
    if total > cap:
        raise ReplyRejected(f"payload of {total} bytes over the cap of {cap} bytes")
    decoded: dict[str, np.ndarray] = {}
    for key, spec in template.items():
        arr = record[key]
        try:
            value = arr.numpy()
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a malformed reply
            raise ReplyRejected(f"'{key}': undecodable array data ({type(exc).__name__})") from None
        if str(value.dtype) != spec.dtype or tuple(value.shape) != spec.shape:
            raise ReplyRejected(
                f"'{key}': data ({value.dtype}, {tuple(value.shape)}) does not match its declared "
                f"dtype/shape ({spec.dtype}, {spec.shape})"
            )
        if not np.all(np.isfinite(value)):
            raise ReplyRejected(f"'{key}': non-finite values (NaN/inf)")
        decoded[key] = value
    return decoded


class RoundValidator:
    """Validates the train replies of one round; remembers senders to reject duplicates."""

    def __init__(
        self,
        server_round: int,
        templates: Mapping[int, Template],
        policy: ValidationPolicy,
    ) -> None:
        self.server_round = server_round
        self.templates = templates
        self.policy = policy
        self.seen_nodes: set[int] = set()
        self.seen_client_ids: dict[str, int] = {}

    def check(self, msg: Message) -> ValidReply:
        """Return the validated reply or raise :class:`ReplyRejected`."""
        policy = self.policy
        node_id = int(msg.metadata.src_node_id)
        if msg.has_error():
            err = msg.error
            raise ReplyRejected(f"error reply (code {err.code}): {err.reason}")
        if not msg.has_content():
            raise ReplyRejected("reply has no content")
        if node_id not in self.templates and policy.strict_senders:
            raise ReplyRejected("node was not sent a train instruction this round")
        if node_id in self.seen_nodes:
            raise ReplyRejected("second reply from the same node in this round")
        self.seen_nodes.add(node_id)
        if msg.metadata.message_type != MessageType.TRAIN:
            raise ReplyRejected(f"message type {msg.metadata.message_type!r} is not 'train'")
        group_id = msg.metadata.group_id
        if group_id and group_id != str(self.server_round):
            raise ReplyRejected(f"reply to round {group_id}, current round is {self.server_round}")
        content = msg.content
        client = content.get(policy.client_key)
        if not isinstance(client, ConfigRecord):
            raise ReplyRejected(f"missing '{policy.client_key}' ConfigRecord")
        client_id = client.get("client-id")
        if not isinstance(client_id, str) or not client_id:
            raise ReplyRejected("missing 'client-id' in the client record")
        reply_round = client.get("server-round")
        if not isinstance(reply_round, int) or isinstance(reply_round, bool):
            raise ReplyRejected("missing or non-integer 'server-round' in the client record")
        if reply_round != self.server_round:
            raise ReplyRejected(f"stale round: reply for round {reply_round}, current round is {self.server_round}")
        if client_id in self.seen_client_ids and self.seen_client_ids[client_id] != node_id:
            raise ReplyRejected(f"client-id {client_id!r} already replied from node {self.seen_client_ids[client_id]}")
        self.seen_client_ids.setdefault(client_id, node_id)
        metrics, num_examples = check_metrics(content.get(policy.metrics_key), policy)
        template = self.templates.get(node_id)
        if template is None:  # only reachable with strict_senders=False
            raise ReplyRejected("no expected template for this node")
        arrays = check_arrays(content, template, policy)
        return ValidReply(
            node_id=node_id,
            client_id=client_id,
            num_examples=num_examples,
            arrays=arrays,
            metrics=metrics,
            client=dict(client),
            message=msg,
        )

    def validate(self, replies: Iterable[Message]) -> tuple[list[ValidReply], list[tuple[int, str]]]:
        """Split replies into valid ones (sorted by node id) and (node_id, reason) rejections."""
        valid: list[ValidReply] = []
        rejected: list[tuple[int, str]] = []
        for msg in replies:
            try:
                valid.append(self.check(msg))
            except ReplyRejected as exc:
                rejected.append((int(msg.metadata.src_node_id), exc.reason))
        valid.sort(key=lambda r: r.node_id)
        return valid, rejected
