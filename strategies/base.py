"""LoraStrategy: the validated, LoRA-aware base every fedpriv strategy builds on.

It subclasses Flower's message-API ``FedAvg`` (for its sampling settings, ``summary`` and the
``start`` loop) but replaces everything between the messages and the aggregate:

* ``configure_train`` decodes the global adapter, lets the mode prepare it (FFA: shared seeded A;
  FedSA: drop B), sends every sampled node its own arrays and config (per-node messages, group_id
  = round), and remembers, per node, exactly what was sent and what must come back.
* ``aggregate_train`` validates every reply against that template (see ``validation.py``),
  records and logs rejections, and aggregates only the valid replies in node-id order, so the
  aggregate is bit-identical to the aggregate of the valid replies alone. No valid reply → the
  previous global arrays are kept (arrays None) with a warning.

Aggregation works on *updates* u_i = reply_i − sent_i, mapped to the global space (hetlora:
zero-padded to the global rank), optionally norm-bounded, combined (weighted mean by
num-examples, or coordinate-wise trimmed mean) and added to the global arrays. The pipeline is
public so wrappers (client-level DP) can reuse validation and the update space without editing
the strategy: ``sample_train_nodes``, ``build_train_messages``, ``validate_replies``,
``round_state``, ``client_update``, ``update_space``, ``apply_update``, ``to_record``,
``aggregate_metrics``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from fedpriv.adapter_parts import CONFIG_MODE, is_shared
from fedpriv.errors import ConfigError
from strategies.robust import check_robust_config, clip_update, trimmed_mean, weighted_mean
from strategies.validation import (
    BASE_REQUIRED_METRICS,
    DP_REQUIRED_METRICS,
    ArraySpec,
    ReplyRejected,
    RoundValidator,
    Template,
    ValidationPolicy,
    ValidReply,
    check_metrics,
    template_of,
)

MAX_METRICS: tuple[str, ...] = ("epsilon", "delta")  # worst case over clients, not an average


@dataclass
class RoundState:
    """What the server sent in one round and what it expects back."""

    server_round: int
    global_arrays: dict[str, np.ndarray]  # after prepare_global; key order = record order
    node_ids: list[int] = field(default_factory=list)
    sent: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # train arrays per node
    templates: dict[int, Template] = field(default_factory=dict)  # expected reply per node
    node_info: dict[int, dict[str, Any]] = field(default_factory=dict)  # e.g. {"rank": 4}
    validator: RoundValidator | None = None


class LoraStrategy(FedAvg):
    """Validated LoRA-aware FedAvg base. Subclasses set ``mode`` and override the hooks."""

    mode: str = "fedavg"

    # pylint: disable=too-many-arguments,too-many-locals
    def __init__(
        self,
        *,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        required_metrics: Sequence[str] | None = None,
        require_dp_metrics: bool = False,
        max_num_examples: int = 10_000_000,
        max_payload_bytes: int | None = None,
        norm_bound: float | None = None,
        trim_beta: float | None = None,
        secure_aggregation: bool = False,
        server_learning_rate: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
        )
        check_robust_config(norm_bound, trim_beta, secure_aggregation)
        if max_num_examples <= 0:
            raise ConfigError("max-num-examples", f"must be positive, got {max_num_examples}")
        if max_payload_bytes is not None and max_payload_bytes <= 0:
            raise ConfigError("max-payload-bytes", f"must be positive, got {max_payload_bytes}")
        try:
            eta = float(server_learning_rate)
        except (TypeError, ValueError):
            eta = math.nan
        if isinstance(server_learning_rate, bool) or not (math.isfinite(eta) and eta > 0):
            raise ConfigError("server-learning-rate", f"must be a positive number, got {server_learning_rate!r}")
        required = tuple(required_metrics) if required_metrics is not None else BASE_REQUIRED_METRICS
        if require_dp_metrics:
            required += tuple(k for k in DP_REQUIRED_METRICS if k not in required)
        self.policy = ValidationPolicy(
            required_metrics=required,
            weighted_by_key=weighted_by_key,
            max_num_examples=int(max_num_examples),
            max_payload_bytes=max_payload_bytes,
            arrays_key=arrayrecord_key,
        )
        self.norm_bound = norm_bound
        self.trim_beta = trim_beta
        self.secure_aggregation = bool(secure_aggregation)
        self.server_learning_rate = eta
        self._rng = random.Random(seed)
        self._rounds: dict[int, RoundState] = {}
        # Public records for the run record.
        self.rejections: dict[int, list[tuple[int, str]]] = {}
        self.accepted: dict[int, list[int]] = {}
        self.eval_rejections: dict[int, list[tuple[int, str]]] = {}
        self.node_client_ids: dict[int, str] = {}

    # ------------------------------------------------------------------------------------------
    # Hooks for subclasses

    def prepare_global(self, global_arrays: dict[str, np.ndarray], server_round: int) -> dict[str, np.ndarray]:
        """Adjust the global adapter before a round (default: unchanged)."""
        return global_arrays

    def reply_keys(self, global_arrays: Mapping[str, np.ndarray]) -> list[str]:
        """Keys clients train and send back (default: shared keys of ``mode``)."""
        return [k for k in global_arrays if is_shared(k, self.mode)]

    def train_keys(self, global_arrays: Mapping[str, np.ndarray]) -> list[str]:
        """Keys sent in a train instruction (default: the reply keys)."""
        return self.reply_keys(global_arrays)

    def eval_keys(self, global_arrays: Mapping[str, np.ndarray]) -> list[str]:
        """Keys sent in an evaluate instruction (default: the whole global adapter)."""
        return list(global_arrays)

    def arrays_for_node(
        self, node_id: int, global_arrays: Mapping[str, np.ndarray], keys: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Arrays a node receives (hetlora: truncated to the node's rank)."""
        return {k: global_arrays[k] for k in keys}

    def node_config(self, node_id: int, server_round: int, config: ConfigRecord) -> dict[str, Any]:
        """Extra config entries for one node (mode always; hetlora: rank; ffa: seed)."""
        return {CONFIG_MODE: self.mode}

    def node_info(self, node_id: int) -> dict[str, Any]:
        """Per-node facts stored in the round state (hetlora: rank)."""
        return {}

    def to_global_space(self, node_id: int, arrays: Mapping[str, np.ndarray], state: RoundState) -> dict[str, np.ndarray]:
        """Map a node's arrays into the global shapes (default: identity, as float64)."""
        return {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}

    def on_valid_reply(self, reply: ValidReply) -> None:
        """Called for every valid reply (hetlora learns profiles here)."""
        self.node_client_ids[reply.node_id] = reply.client_id

    def describe(self) -> dict[str, Any]:
        """Settings for the run record."""
        return {
            "mode": self.mode,
            "norm_bound": self.norm_bound,
            "trim_beta": self.trim_beta,
            "secure_aggregation": self.secure_aggregation,
            "server_learning_rate": self.server_learning_rate,
            "required_metrics": list(self.policy.required_metrics),
            "max_num_examples": self.policy.max_num_examples,
            "max_payload_bytes": self.policy.max_payload_bytes,
        }

    # ------------------------------------------------------------------------------------------
    # Train: configure

    def sample_train_nodes(self, server_round: int, grid: Grid) -> list[int]:
        """Flower's fixed-size sampling without replacement (fraction_train / min_train_nodes)."""
        if self.fraction_train == 0.0:
            return []
        num_connected = len(list(grid.get_node_ids()))
        sample_size = max(int(num_connected * self.fraction_train), self.min_train_nodes)
        nodes = wait_for_nodes(grid, max(self.min_available_nodes, sample_size))
        return sorted(self._rng.sample(nodes, sample_size))

    def _node_message(
        self, node_id: int, server_round: int, config: ConfigRecord, sent: dict, record_cache: dict, message_type: str
    ) -> Message:
        """One instruction: the node's arrays (one ArrayRecord per distinct layout) and its config."""
        cache_key = tuple((k, v.shape) for k, v in sent.items())
        if cache_key not in record_cache:
            record_cache[cache_key] = to_array_record(sent)
        cfg = ConfigRecord(dict(config))
        cfg["server-round"] = server_round
        for key, value in self.node_config(node_id, server_round, config).items():
            cfg[key] = value
        content = RecordDict({self.arrayrecord_key: record_cache[cache_key], self.configrecord_key: cfg})
        return Message(content=content, message_type=message_type, dst_node_id=node_id, group_id=str(server_round))

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        node_ids = self.sample_train_nodes(server_round, grid)
        log(INFO, "configure_train: %s sampled %d nodes", self.__class__.__name__, len(node_ids))
        return self.build_train_messages(server_round, arrays, config, node_ids)

    def build_train_messages(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, node_ids: Sequence[int]
    ) -> list[Message]:
        """Per-node train messages; records the round state used for validation."""
        global_arrays = self.prepare_global(decode_record(arrays), server_round)
        state = RoundState(server_round=server_round, global_arrays=global_arrays, node_ids=list(node_ids))
        train_keys = self.train_keys(global_arrays)
        reply_keys = self.reply_keys(global_arrays)
        if not reply_keys:
            raise ConfigError("strategy", f"{self.mode}: the global adapter has no tensors this mode shares")
        messages: list[Message] = []
        record_cache: dict[Any, ArrayRecord] = {}
        for node_id in node_ids:
            node_id = int(node_id)
            state.node_info[node_id] = self.node_info(node_id)
            sent = self.arrays_for_node(node_id, global_arrays, train_keys)
            state.sent[node_id] = sent
            state.templates[node_id] = template_of({k: sent[k] for k in reply_keys})
            messages.append(self._node_message(node_id, server_round, config, sent, record_cache, MessageType.TRAIN))
        state.validator = RoundValidator(server_round, state.templates, self.policy)
        self._rounds[server_round] = state
        for old in [r for r in self._rounds if r < server_round - 1]:
            del self._rounds[old]
        return messages

    def round_state(self, server_round: int) -> RoundState | None:
        return self._rounds.get(server_round)

    # ------------------------------------------------------------------------------------------
    # Train: validate + aggregate

    def validate_replies(self, server_round: int, replies: Iterable[Message]) -> list[ValidReply]:
        """Validate replies; log and record rejections; return valid ones sorted by node id."""
        replies = list(replies)
        state = self._rounds.get(server_round)
        if state is None or state.validator is None:
            rejected = [(int(m.metadata.src_node_id), "no train instruction recorded for this round") for m in replies]
            valid: list[ValidReply] = []
        else:
            valid, rejected = state.validator.validate(replies)
        for node_id, reason in rejected:
            log(WARNING, "Round %d: rejected reply from node %d: %s", server_round, node_id, reason)
        self.rejections.setdefault(server_round, []).extend(rejected)
        self.accepted.setdefault(server_round, []).extend(r.node_id for r in valid)
        for reply in valid:
            self.on_valid_reply(reply)
        log(INFO, "aggregate_train: round %d, %d valid replies, %d rejected", server_round, len(valid), len(rejected))
        return valid

    def update_space(self, state: RoundState) -> dict[str, ArraySpec]:
        """Shapes of an update in the global space (the reply keys at global shapes)."""
        keys = self.reply_keys(state.global_arrays)
        return template_of({k: state.global_arrays[k] for k in keys})

    def client_update(self, reply: ValidReply, state: RoundState) -> dict[str, np.ndarray]:
        """u_i = reply − sent, in the global space, float64."""
        sent = state.sent[reply.node_id]
        now = self.to_global_space(reply.node_id, reply.arrays, state)
        before = self.to_global_space(reply.node_id, {k: sent[k] for k in reply.arrays}, state)
        return {k: now[k] - before[k] for k in now}

    def bounded_updates(self, valid: Sequence[ValidReply], state: RoundState) -> list[dict[str, np.ndarray]]:
        """Client updates, each clipped to ``norm_bound`` when set."""
        updates = [self.client_update(r, state) for r in valid]
        if self.norm_bound is not None:
            updates = [clip_update(u, self.norm_bound)[0] for u in updates]
        return updates

    def combine(self, updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
        if self.trim_beta is not None:
            return trimmed_mean(updates, self.trim_beta)
        return weighted_mean(updates, weights)

    def apply_update(self, state: RoundState, update: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """New global arrays: global + η·update on the updated keys, in the global dtype.

        η is ``server_learning_rate`` (FedOpt's server step, Reddi et al. 2021; Flower's message-API
        FedAvgM calls it the same). η = 1 is plain FedAvg bit for bit, since 1.0·x == x in IEEE floats.
        Scaling the released aggregate is post-processing, so no DP guarantee changes."""
        new: dict[str, np.ndarray] = {}
        for key, value in state.global_arrays.items():
            if key in update:
                new[key] = (np.asarray(value, dtype=np.float64) + self.server_learning_rate * update[key]).astype(value.dtype)
            else:
                new[key] = value
        return new

    def aggregate_valid(self, state: RoundState, valid: Sequence[ValidReply]) -> dict[str, np.ndarray]:
        """Aggregate validated replies into new global arrays (plaintext path)."""
        updates = self.bounded_updates(valid, state)
        return self.apply_update(state, self.combine(updates, [r.num_examples for r in valid]))

    def to_record(self, arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
        return to_array_record(arrays)

    def aggregate_metrics(self, valid: Sequence[ValidReply], num_rejected: int = 0) -> MetricRecord:
        """Weighted mean of client metrics; num-examples summed; epsilon/delta as the max."""
        metrics = aggregate_metric_dicts([r.metrics for r in valid], [r.num_examples for r in valid], self.weighted_by_key)
        metrics["num-replies-valid"] = len(valid)
        metrics["num-replies-rejected"] = int(num_rejected)
        return metrics

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        valid = self.validate_replies(server_round, replies)
        num_rejected = len(replies) - len(valid)
        state = self._rounds.get(server_round)
        if not valid or state is None:
            log(WARNING, "Round %d: no valid reply; keeping the previous global arrays", server_round)
            return None, self.aggregate_metrics([], num_rejected)
        new_global = self.aggregate_valid(state, valid)
        return self.to_record(new_global), self.aggregate_metrics(valid, num_rejected)

    # ------------------------------------------------------------------------------------------
    # Evaluate

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.fraction_evaluate == 0.0:
            return []
        num_connected = len(list(grid.get_node_ids()))
        sample_size = max(int(num_connected * self.fraction_evaluate), self.min_evaluate_nodes)
        nodes = wait_for_nodes(grid, max(self.min_available_nodes, sample_size))
        node_ids = sorted(self._rng.sample(nodes, sample_size))
        global_arrays = self.prepare_global(decode_record(arrays), server_round)
        keys = self.eval_keys(global_arrays)
        messages: list[Message] = []
        record_cache: dict[Any, ArrayRecord] = {}
        for node_id in node_ids:
            sent = self.arrays_for_node(node_id, global_arrays, keys)
            messages.append(self._node_message(node_id, server_round, config, sent, record_cache, MessageType.EVALUATE))
        log(INFO, "configure_evaluate: sampled %d nodes", len(node_ids))
        return messages

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Tolerant evaluate aggregation: bad replies are skipped and recorded, never fatal."""
        policy = ValidationPolicy(required_metrics=(self.weighted_by_key,), weighted_by_key=self.weighted_by_key,
                                  max_num_examples=self.policy.max_num_examples)
        good: list[tuple[dict[str, Any], float]] = []
        rejected: list[tuple[int, str]] = []
        seen: set[int] = set()
        for msg in replies:
            node_id = int(msg.metadata.src_node_id)
            try:
                if msg.has_error():
                    raise ReplyRejected(f"error reply (code {msg.error.code}): {msg.error.reason}")
                if node_id in seen:
                    raise ReplyRejected("second reply from the same node in this round")
                seen.add(node_id)
                metrics, num = check_metrics(msg.content.get("metrics"), policy)
                good.append((metrics, num))
            except ReplyRejected as exc:
                rejected.append((node_id, exc.reason))
                log(WARNING, "Round %d: rejected evaluate reply from node %d: %s", server_round, node_id, exc.reason)
        self.eval_rejections.setdefault(server_round, []).extend(rejected)
        if not good:
            return None
        metrics = aggregate_metric_dicts([m for m, _ in good], [n for _, n in good], self.weighted_by_key)
        return metrics

    def summary(self) -> None:
        log(INFO, "\t├──> %s (mode=%s)", self.__class__.__name__, self.mode)
        for key, value in self.describe().items():
            log(INFO, "\t│\t├── %s: %s", key, value)
        super().summary()


# ----------------------------------------------------------------------------------------------
# helpers


def wait_for_nodes(grid: Grid, minimum: int) -> list[int]:
    """Connected node ids (sorted), waiting until at least ``minimum`` are connected."""
    while len(nodes := sorted(int(n) for n in grid.get_node_ids())) < minimum:
        log(INFO, "Waiting for nodes to connect: %d connected (minimum required: %d).", len(nodes), minimum)
        time.sleep(1)
    return nodes


def decode_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {key: arr.numpy() for key, arr in record.items()}


def to_array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def aggregate_metric_dicts(
    dicts: Sequence[Mapping[str, Any]], weights: Sequence[float], weighted_by_key: str
) -> MetricRecord:
    """Weighted mean per scalar key (over the replies that have it); the weight key is summed;
    epsilon / delta are reported as the maximum over clients; list values are skipped."""
    out: dict[str, float | int] = {}
    keys: list[str] = []
    for d in dicts:
        keys.extend(k for k in d if k not in keys)
    for key in keys:
        pairs = [(d[key], w) for d, w in zip(dicts, weights, strict=True) if key in d and not isinstance(d[key], list)]
        if not pairs:
            continue
        if key == weighted_by_key:
            total = sum(v for v, _ in pairs)
            out[key] = int(total) if all(isinstance(v, int) for v, _ in pairs) else float(total)
        elif key in MAX_METRICS:
            out[key] = float(max(v for v, _ in pairs))
        else:
            wsum = sum(w for _, w in pairs)
            out[key] = float(sum(float(v) * w for v, w in pairs) / wsum)
    return MetricRecord(out)
