"""Validation of replies before anything touches the aggregate or the run record.

A train reply is checked against the *template* of what the server expects back from that node
(the shapes/dtypes of the arrays it was sent, restricted to the keys the mode shares; for hetlora
the node's own rank). Checks, in order (the first failing one is the recorded reason):

1. error reply (``msg.has_error()``) / no content
2. sender: not sent an instruction this round, or a second reply from the same node in the round
3. message type is not the instruction's (``train`` / ``evaluate``); ``group_id`` of another round
4. ``"client"`` ConfigRecord: missing, no ``client-id`` (or one with control characters or over
   ``MAX_CLIENT_ID`` characters), ``server-round`` != current round (stale), ``client-id``
   already seen from another node this round, or bound to another node (:class:`ClientBindings`:
   a client id belongs to the node that presented it first, and a node keeps its client id)
5. ``"metrics"`` MetricRecord: missing, missing required keys, non-numeric values (a string sent
   in a ConfigRecord is not a MetricRecord), NaN anywhere, inf outside ``allow_inf_metrics``,
   ``num-examples`` <= 0 or > cap; an ``epsilon`` below the highest this client reported before
   (record-level ε only grows: a lower one means a reset ledger or a forgery)
6. train only, ``"arrays"`` ArrayRecord: missing, missing / extra keys, wrong declared dtype /
   shape, total payload (all ArrayRecords of the reply) over the size cap — all before decoding
   anything — then undecodable data, decoded dtype / shape that differ from the declared ones,
   non-finite values (NaN / inf). Under secure aggregation (``expect_arrays=False``) the update
   comes only masked, in later messages: a train reply that carries any ArrayRecord is refused.

Nothing here mutates a message. A valid reply is returned as a :class:`ValidReply` holding the
decoded arrays, so aggregation never decodes twice. Valid replies are returned sorted by client id
(then node id): node ids are random per Flower run, client ids are not, so the aggregate does not
depend on which node ids a run happened to get.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord

from fedpriv.released import released_fields

NUMPY_STYPE = "numpy.ndarray"
MAX_CLIENT_ID = 256  # characters
ERROR_REPLY = "error reply"  # how the reason of a rejected error reply (a failed device) starts
# A record-level ε recomputed for the same steps is the same number; this only absorbs float noise.
EPSILON_RTOL = 1e-9

# Always present in a fedpriv train reply (under DP the losses stay on the device: client/replies.py).
BASE_REQUIRED_METRICS: tuple[str, ...] = ("num-examples",)
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
    # A non-DP client may report epsilon = inf; a diverged model an infinite perplexity.
    allow_inf_metrics: tuple[str, ...] = ("epsilon", "start_perplexity", "eval_perplexity")
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


def check_client_id(client_id: Any) -> str:
    """The reply's client id, or :class:`ReplyRejected`: a non-empty string of printable characters."""
    if not isinstance(client_id, str) or not client_id:
        raise ReplyRejected("missing 'client-id' in the client record")
    if len(client_id) > MAX_CLIENT_ID:
        raise ReplyRejected(f"'client-id' of {len(client_id)} characters (at most {MAX_CLIENT_ID})")
    if not client_id.isprintable():
        raise ReplyRejected(f"'client-id' {client_id!r} holds control characters")
    return client_id


class ClientBindings:
    """Which node presented which client id first.

    A client id belongs to the node that first presented it in an accepted reply, and a node keeps
    the client id it presented, for as long as the server runs. So a node cannot write metrics or a
    lower ε under another client's id, nor switch ids. What this cannot do is tell which of two
    nodes is the real owner of an id neither has presented yet: with SuperNode authentication the
    node ids are stable keys, without it a restarted SuperNode comes back under a new node id and
    its client id stays refused until the server restarts.
    """

    def __init__(self) -> None:
        self.node_of: dict[str, int] = {}
        self.client_of: dict[int, str] = {}

    def conflict(self, node_id: int, client_id: str) -> str | None:
        """Why ``node_id`` may not present ``client_id``, or None."""
        owner = self.node_of.get(client_id)
        if owner is not None and owner != node_id:
            return f"client-id {client_id!r} belongs to node {owner}, which presented it first"
        known = self.client_of.get(node_id)
        if known is not None and known != client_id:
            return f"node {node_id} presented client-id {known!r} before, now {client_id!r}"
        return None

    def bind(self, node_id: int, client_id: str) -> None:
        if self.conflict(node_id, client_id) is None:
            self.node_of[client_id] = node_id
            self.client_of[node_id] = client_id


class RoundValidator:
    """Validates the replies to one round's train (or evaluate) instructions; remembers senders
    to reject duplicates.

    ``templates`` maps every node that was sent an instruction to the arrays its reply must carry
    (evaluate: an empty template each; evaluate replies carry no arrays). ``bindings`` and
    ``epsilon_floor`` (client id -> highest ε accepted so far) come from the strategy, which
    updates them only for accepted replies.
    """

    def __init__(
        self,
        server_round: int,
        templates: Mapping[int, Template],
        policy: ValidationPolicy,
        *,
        message_type: str = MessageType.TRAIN,
        bindings: ClientBindings | None = None,
        epsilon_floor: Mapping[str, float] | None = None,
        expect_arrays: bool = True,
    ) -> None:
        self.server_round = server_round
        self.expect_arrays = expect_arrays
        self.templates = templates
        self.policy = policy
        self.message_type = message_type
        self.bindings = bindings
        self.epsilon_floor = epsilon_floor if epsilon_floor is not None else {}
        self.seen_nodes: set[int] = set()
        self.seen_client_ids: dict[str, int] = {}

    def check(self, msg: Message) -> ValidReply:
        """Return the validated reply or raise :class:`ReplyRejected`."""
        policy = self.policy
        node_id = int(msg.metadata.src_node_id)
        if msg.has_error():
            err = msg.error
            raise ReplyRejected(f"{ERROR_REPLY} (code {err.code}): {err.reason}")
        if not msg.has_content():
            raise ReplyRejected("reply has no content")
        if node_id not in self.templates and policy.strict_senders:
            raise ReplyRejected(f"node was not sent a {self.message_type} instruction this round")
        if node_id in self.seen_nodes:
            raise ReplyRejected("second reply from the same node in this round")
        self.seen_nodes.add(node_id)
        if msg.metadata.message_type != self.message_type:
            raise ReplyRejected(f"message type {msg.metadata.message_type!r} is not {self.message_type!r}")
        group_id = msg.metadata.group_id
        if group_id and group_id != str(self.server_round):
            raise ReplyRejected(f"reply to round {group_id}, current round is {self.server_round}")
        content = msg.content
        client = content.get(policy.client_key)
        if not isinstance(client, ConfigRecord):
            raise ReplyRejected(f"missing '{policy.client_key}' ConfigRecord")
        client_id = check_client_id(client.get("client-id"))
        reply_round = client.get("server-round")
        if not isinstance(reply_round, int) or isinstance(reply_round, bool):
            raise ReplyRejected("missing or non-integer 'server-round' in the client record")
        if reply_round != self.server_round:
            raise ReplyRejected(f"stale round: reply for round {reply_round}, current round is {self.server_round}")
        if client_id in self.seen_client_ids and self.seen_client_ids[client_id] != node_id:
            raise ReplyRejected(f"client-id {client_id!r} already replied from node {self.seen_client_ids[client_id]}")
        if self.bindings is not None and (conflict := self.bindings.conflict(node_id, client_id)):
            raise ReplyRejected(conflict)
        self.seen_client_ids.setdefault(client_id, node_id)
        metrics, num_examples = check_metrics(content.get(policy.metrics_key), policy)
        floor = self.epsilon_floor.get(client_id)
        epsilon = metrics.get("epsilon")
        if floor is not None and isinstance(epsilon, int | float) and epsilon < floor * (1.0 - EPSILON_RTOL):
            raise ReplyRejected(f"epsilon {epsilon:.6g} is below the {floor:.6g} this client reported before "
                                "(record-level ε only grows: a reset privacy ledger?)")
        template = self.templates.get(node_id)
        if template is None:  # only reachable with strict_senders=False
            raise ReplyRejected("no expected template for this node")
        arrays: dict[str, np.ndarray] = {}
        if self.message_type == MessageType.TRAIN and self.expect_arrays:
            arrays = check_arrays(content, template, policy)
        elif self.message_type == MessageType.TRAIN and content.array_records:
            raise ReplyRejected("arrays in a secure-aggregation train reply: an update is accepted only masked")
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
        """Split replies into valid ones (sorted by client id, then node id) and (node_id, reason)
        rejections."""
        valid: list[ValidReply] = []
        rejected: list[tuple[int, str]] = []
        for msg in replies:
            try:
                valid.append(self.check(msg))
            except ReplyRejected as exc:
                rejected.append((int(msg.metadata.src_node_id), exc.reason))
        valid.sort(key=lambda r: (r.client_id, r.node_id))
        return valid, rejected


@dataclass(frozen=True)
class AcceptedReply:
    """What the run record keeps of an accepted reply (validated metrics, no arrays)."""

    node_id: int
    client_id: str
    metrics: dict[str, Any]
    upload_bytes: int = 0
    released: dict[str, str] = field(default_factory=dict)  # every field of the reply -> its declared mechanism
    noise_source: str = ""  # where the device says its DP-SGD noise came from (client record dp-noise-source)


@dataclass
class PhaseReport:
    """What one phase of a round (``train``, ``evaluate``, or ``identify``: the evaluate that
    learns which client each node is) sent and got back. The run record is written from these
    only, so nothing a strategy did not accept reaches ``metrics.json``."""

    phase: str
    server_round: int
    sent: list[int] = field(default_factory=list)
    accepted: list[AcceptedReply] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # content the validator refused
    failed: list[tuple[int, str]] = field(default_factory=list)  # error replies (the device failed)
    minimum: int = 1  # accepted replies needed to aggregate
    aggregated: bool = False  # train: the global adapter was updated; evaluate: metrics were aggregated
    note: str = ""  # why not aggregated, or anything else the record should say about the phase
    client_of: dict[int, str] = field(default_factory=dict)  # known client id of every sent node

    def add(self, valid: Iterable[ValidReply], rejected: Iterable[tuple[int, str]], failed: Iterable[tuple[int, str]],
            arrays_key: str = "arrays") -> None:
        for reply in valid:
            arrays = reply.message.content.get(arrays_key)
            size = arrays.count_bytes() if isinstance(arrays, ArrayRecord) else 0
            source = reply.client.get("dp-noise-source", "")
            self.accepted.append(AcceptedReply(reply.node_id, reply.client_id, dict(reply.metrics), size,
                                               released_fields(reply.message.content), source[:200] if isinstance(source, str) else ""))
        self.rejected.extend(rejected)
        self.failed.extend(failed)

    def dropouts(self) -> list[int]:
        """Nodes sent an instruction that gave no reply at all (within the round timeout)."""
        replied = {r.node_id for r in self.accepted} | {n for n, _ in self.rejected} | {n for n, _ in self.failed}
        return [n for n in self.sent if n not in replied]
