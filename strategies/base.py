"""LoraStrategy: the validated, LoRA-aware base every fedpriv strategy builds on.

It subclasses Flower's message-API ``FedAvg`` (for its sampling settings, ``summary`` and the
``start`` loop) but replaces everything between the messages and the aggregate:

* ``configure_identify`` / ``aggregate_identify`` (called by fedpriv's server before its first
  round, see ``server/rounds.py``) send every connected node not yet known an evaluate
  instruction and learn, from the validated replies, which client each node is. Sampling then
  draws from the nodes in client-id order, so with the same seed the same *clients* are sampled
  whatever node ids Flower gave them (node ids are random per run; a resumed run gets new ones).
* ``configure_train`` decodes the global adapter, lets the mode prepare it (FFA: shared seeded A;
  FedSA: drop B), sends every sampled node its own arrays and config (per-node messages, group_id
  = round), and remembers, per node, exactly what was sent and what must come back.
* ``aggregate_train`` validates every reply against that template (see ``validation.py``),
  records and logs rejections, and aggregates only the valid replies in client-id order, so the
  aggregate is bit-identical to the aggregate of the valid replies alone. Fewer valid replies
  than ``min_train_replies`` (default 1) → the previous global arrays are kept (arrays None) with
  a warning and the reason in the round's :class:`PhaseReport`.
* ``aggregate_evaluate`` validates evaluate replies the same way (sender, round, client record,
  client-id binding, metrics) and aggregates them if at least ``min_evaluate_replies`` are valid.

Under secure aggregation (``secure_aggregation=True``) the round loop calls ``train_secure``
instead of ``configure_train`` / ``aggregate_train``: the same sampled train instructions become
the setup of a SecAgg+ round (``strategies/secure_round.py``), the devices clip and mask their
updates, and the strategy steps the global adapter by the unmasked weighted mean; it never holds
one device's update. Each such round leaves its record in ``secure_records``.

Every phase leaves a :class:`strategies.validation.PhaseReport` (``phase_report``): what was sent,
accepted, rejected (and why), failed, and whether it aggregated; the run record is written from it.
``state_dict`` / ``load_state_dict`` carry what the next round needs across a server restart.

Aggregation works on *updates* u_i = reply_i − sent_i, mapped to the global space (hetlora:
zero-padded to the global rank), optionally norm-bounded, combined (weighted mean by
num-examples, or coordinate-wise trimmed mean) and added to the global arrays. The pipeline is
public so wrappers (client-level DP) can reuse validation and the update space without editing
the strategy: ``sample_train_nodes``, ``build_train_messages``, ``validate_replies``,
``round_state``, ``client_update``, ``update_space``, ``apply_update``, ``to_record``,
``aggregate_metrics``, ``order_nodes``.
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
from strategies.secure_round import Send, SecureOutcome, patch_upload_bytes, plan_for, quantization_range, run_secure_round
from strategies.validation import (
    BASE_REQUIRED_METRICS,
    DP_REQUIRED_METRICS,
    ERROR_REPLY,
    ArraySpec,
    ClientBindings,
    PhaseReport,
    RoundValidator,
    Template,
    ValidationPolicy,
    ValidReply,
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
        secure_aggregation_range: float = 0.0,
        server_learning_rate: float = 1.0,
        seed: int | None = None,
        min_train_replies: int = 1,
        min_evaluate_replies: int = 1,
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
        for key, value in (("min-train-replies", min_train_replies), ("min-evaluate-replies", min_evaluate_replies)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(key, f"must be a positive integer, got {value!r}")
        self.min_train_replies = min_train_replies
        self.min_evaluate_replies = min_evaluate_replies
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
        if isinstance(secure_aggregation_range, bool) or not (isinstance(secure_aggregation_range, int | float)
                                                              and math.isfinite(secure_aggregation_range)
                                                              and secure_aggregation_range >= 0):
            raise ConfigError("secure-aggregation-range", f"must be zero or a positive number, got {secure_aggregation_range!r}")
        self.secure_aggregation_range = float(secure_aggregation_range)
        self.secure_records: dict[int, dict[str, Any]] = {}  # round -> what its secure aggregation did
        self.server_learning_rate = eta
        self._rng = random.Random(seed)
        self._rounds: dict[int, RoundState] = {}
        self._eval_validators: dict[tuple[str, int], RoundValidator] = {}
        self.bindings = ClientBindings()
        self.node_client_ids: dict[int, str] = self.bindings.client_of  # node -> client id (accepted replies)
        self.epsilon_floor: dict[str, float] = {}  # client id -> highest record-level ε accepted
        # Public records for the run record.
        self.rejections: dict[int, list[tuple[int, str]]] = {}  # train replies not accepted (errors included)
        self.accepted: dict[int, list[int]] = {}
        self.eval_rejections: dict[int, list[tuple[int, str]]] = {}
        self.reports: dict[tuple[str, int], PhaseReport] = {}  # (phase, round) -> what happened

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
        """Called for every accepted reply, train or evaluate (hetlora learns profiles here)."""
        self.bindings.bind(reply.node_id, reply.client_id)

    def describe(self) -> dict[str, Any]:
        """Settings for the run record."""
        return {
            "mode": self.mode,
            "norm_bound": self.norm_bound,
            "trim_beta": self.trim_beta,
            "secure_aggregation": self.secure_aggregation,
            "secure_aggregation_range": self.secure_aggregation_range,
            "server_learning_rate": self.server_learning_rate,
            "required_metrics": list(self.policy.required_metrics),
            "max_num_examples": self.policy.max_num_examples,
            "max_payload_bytes": self.policy.max_payload_bytes,
            "min_train_replies": self.min_train_replies,
            "min_evaluate_replies": self.min_evaluate_replies,
        }

    # ------------------------------------------------------------------------------------------
    # Identity, ordering, reports, restart state

    def order_nodes(self, nodes: Iterable[int]) -> list[int]:
        """Nodes whose client id is known, in client-id order, then the others by node id.

        Sampling draws positions in this list, so a seed picks the same clients in every run."""
        nodes = [int(n) for n in nodes]
        known = sorted((self.node_client_ids[n], n) for n in nodes if n in self.node_client_ids)
        return [n for _, n in known] + sorted(n for n in nodes if n not in self.node_client_ids)

    def phase_report(self, phase: str, server_round: int) -> PhaseReport | None:
        return self.reports.get((phase, server_round))

    def start_report(self, phase: str, server_round: int, sent: Sequence[int], minimum: int) -> PhaseReport:
        report = PhaseReport(phase=phase, server_round=server_round, sent=[int(n) for n in sent], minimum=minimum,
                             client_of={int(n): self.node_client_ids[int(n)] for n in sent if int(n) in self.node_client_ids})
        self.reports[(phase, server_round)] = report
        for key in [k for k in self.reports if k[1] < server_round - 1]:  # the run record reads them right away
            del self.reports[key]
        return report

    def state_dict(self) -> dict[str, Any]:
        """What the next round needs after a restart (JSON-serializable): the sampler's RNG and the
        ε each client reported. Node-keyed state (client bindings, hetlora's learned profiles) is
        not kept: node ids change with a new Flower run, and ``configure_identify`` relearns it."""
        version, internal, gauss = self._rng.getstate()
        return {"rng": [version, list(internal), gauss], "epsilon_floor": dict(self.epsilon_floor)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self.epsilon_floor = {str(k): float(v) for k, v in state["epsilon_floor"].items()}

    def configure_identify(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> list[Message]:
        """Evaluate instructions for every connected node whose client id is not known yet.

        ``server_round`` is the round the global adapter comes from (0: the initial one). The
        device answers as it does any evaluate instruction; its reply tells which client it is."""
        nodes = wait_for_nodes(grid, self.min_available_nodes)
        unknown = [n for n in nodes if n not in self.node_client_ids]
        return self.build_evaluate_messages(server_round, arrays, config, unknown, phase="identify")

    def aggregate_identify(self, server_round: int, replies: Iterable[Message]) -> None:
        valid = self._validate_evaluate("identify", server_round, replies)
        report = self.reports[("identify", server_round)]
        report.aggregated = bool(valid)
        log(INFO, "identify: %d of %d nodes told their client id", len(valid), len(report.sent))

    # ------------------------------------------------------------------------------------------
    # Train: configure

    def sample_train_nodes(self, server_round: int, grid: Grid) -> list[int]:
        """Flower's fixed-size sampling without replacement (fraction_train / min_train_nodes),
        drawn from the nodes in ``order_nodes`` order."""
        if self.fraction_train == 0.0:
            return []
        num_connected = len(list(grid.get_node_ids()))
        sample_size = max(int(num_connected * self.fraction_train), self.min_train_nodes)
        nodes = self.order_nodes(wait_for_nodes(grid, max(self.min_available_nodes, sample_size)))
        if sample_size >= len(nodes):
            return nodes
        return self.order_nodes(self._rng.sample(nodes, sample_size))

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
        state.validator = RoundValidator(server_round, state.templates, self.policy, bindings=self.bindings,
                                         epsilon_floor=self.epsilon_floor, expect_arrays=not self.secure_aggregation)
        self._rounds[server_round] = state
        self.start_report("train", server_round, state.node_ids, self.min_train_replies)
        for old in [r for r in self._rounds if r < server_round - 1]:
            del self._rounds[old]
        return messages

    def round_state(self, server_round: int) -> RoundState | None:
        return self._rounds.get(server_round)

    # ------------------------------------------------------------------------------------------
    # Train: validate + aggregate

    def validate_replies(self, server_round: int, replies: Iterable[Message]) -> list[ValidReply]:
        """Validate train replies; log and record rejections; return valid ones in client-id order."""
        replies = list(replies)
        state = self._rounds.get(server_round)
        report = self.reports.get(("train", server_round)) or self.start_report("train", server_round, [], self.min_train_replies)
        if state is None or state.validator is None:
            rejected = [(int(m.metadata.src_node_id), "no train instruction recorded for this round") for m in replies]
            valid: list[ValidReply] = []
        else:
            valid, rejected = state.validator.validate(replies)
        failed = _split_failures(replies, rejected)
        for node_id, reason in rejected:
            log(WARNING, "Round %d: rejected reply from node %d: %s", server_round, node_id, reason)
        self.rejections.setdefault(server_round, []).extend(rejected)
        self.accepted.setdefault(server_round, []).extend(r.node_id for r in valid)
        for reply in valid:
            self.on_valid_reply(reply)
            epsilon = reply.metrics.get("epsilon")  # only a train reply's ε counts: it comes with the update it paid for
            if isinstance(epsilon, int | float) and epsilon > self.epsilon_floor.get(reply.client_id, -math.inf):
                self.epsilon_floor[reply.client_id] = float(epsilon)
        report.add(valid, [r for r in rejected if r not in failed], failed, self.arrayrecord_key)
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
        report = self.reports[("train", server_round)]
        if state is None or len(valid) < self.min_train_replies:
            report.note = (f"{len(valid)} valid of {len(state.node_ids) if state else 0} sampled, fewer than the "
                           f"{self.min_train_replies} needed (min-train-nodes): kept the previous global adapter")
            log(WARNING, "Round %d: %s", server_round, report.note)
            return None, self.aggregate_metrics(valid, num_rejected)
        new_global = self.aggregate_valid(state, valid)
        report.aggregated = True
        return self.to_record(new_global), self.aggregate_metrics(valid, num_rejected)

    # ------------------------------------------------------------------------------------------
    # Train under secure aggregation

    def run_secure(self, server_round: int, messages: list[Message], send: Send, l2_bound: float | None,
                   weighting: str, min_survivors: int, min_trained: int) -> SecureOutcome:
        """Run one secure round over ``messages`` (built by ``build_train_messages``), record it."""
        state = self._rounds[server_round]
        plan = plan_for(self.update_space(state), l2_bound, weighting)
        outcome = run_secure_round(self, server_round, messages, send, plan,
                                   coordinate_range=quantization_range(plan, self.secure_aggregation_range),
                                   min_survivors=min_survivors, min_trained=min_trained)
        patch_upload_bytes(self.reports[("train", server_round)], outcome)
        self.secure_records[server_round] = outcome.record
        for old in [r for r in self.secure_records if r < server_round - 1]:  # the run record reads it right away
            del self.secure_records[old]
        return outcome

    def train_secure(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, send: Send
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """A train round under secure aggregation: devices clip their updates to ``norm_bound``
        and weight them by num-examples inside the masked vector; the global adapter steps by the
        unmasked weighted mean. An aborted round keeps the previous global adapter (released:
        nothing), as does one with fewer valid replies than ``min_train_replies``."""
        messages = list(self.configure_train(server_round, arrays, config, grid))
        outcome = self.run_secure(server_round, messages, send, self.norm_bound, "num-examples",
                                  max(2, self.min_train_replies), self.min_train_replies)
        report = self.reports[("train", server_round)]
        metrics = self.aggregate_metrics(outcome.valid, outcome.num_rejected)
        metrics.update(outcome.metrics())
        if outcome.result is None:
            outcome.record["released"] = "nothing"
            report.note = f"{outcome.abort_reason}: kept the previous global adapter"
            log(WARNING, "Round %d: %s", server_round, report.note)
            return None, metrics
        outcome.record["released"] = "weighted mean"
        # |released − plaintext| per coordinate of the global step (before the cast to the adapter's dtype)
        outcome.record["update_error_bound"] = self.server_learning_rate * outcome.plan.error_bound(outcome.result.quantization)
        new_global = self.apply_update(self._rounds[server_round], outcome.mean_update())
        report.aggregated = True
        return self.to_record(new_global), metrics

    # ------------------------------------------------------------------------------------------
    # Evaluate

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.fraction_evaluate == 0.0:
            return []
        num_connected = len(list(grid.get_node_ids()))
        sample_size = max(int(num_connected * self.fraction_evaluate), self.min_evaluate_nodes)
        nodes = self.order_nodes(wait_for_nodes(grid, max(self.min_available_nodes, sample_size)))
        if sample_size < len(nodes):
            nodes = self.order_nodes(self._rng.sample(nodes, sample_size))
        messages = self.build_evaluate_messages(server_round, arrays, config, nodes)
        log(INFO, "configure_evaluate: sampled %d nodes", len(nodes))
        return messages

    def build_evaluate_messages(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, node_ids: Sequence[int], phase: str = "evaluate"
    ) -> list[Message]:
        """Evaluate instructions (the whole adapter the mode evaluates) and the validator of their replies."""
        global_arrays = self.prepare_global(decode_record(arrays), server_round)
        keys = self.eval_keys(global_arrays)
        messages: list[Message] = []
        record_cache: dict[Any, ArrayRecord] = {}
        for node_id in node_ids:
            sent = self.arrays_for_node(int(node_id), global_arrays, keys)
            messages.append(self._node_message(int(node_id), server_round, config, sent, record_cache, MessageType.EVALUATE))
        policy = ValidationPolicy(required_metrics=(self.weighted_by_key,), weighted_by_key=self.weighted_by_key,
                                  max_num_examples=self.policy.max_num_examples)
        self._eval_validators[(phase, server_round)] = RoundValidator(
            server_round, {int(n): {} for n in node_ids}, policy, message_type=MessageType.EVALUATE, bindings=self.bindings
        )
        for key in [k for k in self._eval_validators if k[1] < server_round - 1]:
            del self._eval_validators[key]
        minimum = self.min_evaluate_replies if phase == "evaluate" else 1
        self.start_report(phase, server_round, node_ids, minimum)
        return messages

    def _validate_evaluate(self, phase: str, server_round: int, replies: Iterable[Message]) -> list[ValidReply]:
        replies = list(replies)
        validator = self._eval_validators.get((phase, server_round))
        report = self.reports.get((phase, server_round)) or self.start_report(phase, server_round, [], self.min_evaluate_replies)
        if validator is None:
            valid: list[ValidReply] = []
            rejected = [(int(m.metadata.src_node_id), f"no {phase} instruction recorded for this round") for m in replies]
        else:
            valid, rejected = validator.validate(replies)
        failed = _split_failures(replies, rejected)
        for node_id, reason in rejected:
            log(WARNING, "Round %d: rejected %s reply from node %d: %s", server_round, phase, node_id, reason)
        if phase == "evaluate":
            self.eval_rejections.setdefault(server_round, []).extend(rejected)
        for reply in valid:
            self.on_valid_reply(reply)
        report.add(valid, [r for r in rejected if r not in failed], failed)
        return valid

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Validated evaluate aggregation: bad replies are skipped and recorded, never fatal."""
        valid = self._validate_evaluate("evaluate", server_round, replies)
        report = self.reports[("evaluate", server_round)]
        if len(valid) < self.min_evaluate_replies:
            report.note = (f"{len(valid)} valid evaluate replies, fewer than the {self.min_evaluate_replies} needed "
                           "(min-evaluate-nodes): no aggregate evaluation this round")
            log(WARNING, "Round %d: %s", server_round, report.note)
            return None
        report.aggregated = True
        return aggregate_metric_dicts([r.metrics for r in valid], [r.num_examples for r in valid], self.weighted_by_key)

    def summary(self) -> None:
        log(INFO, "\t├──> %s (mode=%s)", self.__class__.__name__, self.mode)
        for key, value in self.describe().items():
            log(INFO, "\t│\t├── %s: %s", key, value)
        super().summary()


# ----------------------------------------------------------------------------------------------
# helpers


def _split_failures(replies: Sequence[Message], rejected: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The rejections that are error replies (the device failed) rather than refused content."""
    errored = {int(m.metadata.src_node_id) for m in replies if m.has_error()}
    return [(node, reason) for node, reason in rejected if node in errored and reason.startswith(ERROR_REPLY)]


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
