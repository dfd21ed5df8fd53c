"""The run record: per-round, per-client metrics and the privacy each client has spent.

Written to `metrics.json` after every round, so a crashed or interrupted run still leaves what it did.
It is written only from what the strategy accepted (`strategies.validation.PhaseReport`): a reply
the validator refused appears as a rejection with its reason, never with its metrics or ε.

`metrics.json` is strict JSON (`allow_nan=False`). JSON has no infinity, so a non-finite number
(ε = ∞ of a client without a formal guarantee, an infinite perplexity) is written as the string
`"inf"` (`"-inf"`, `"nan"`); `load_metrics` reads those back as floats, and so does Python's
`float("inf")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedpriv import strict_json
from fedpriv.config import RunConfig
from fedpriv.files import write_atomically
from strategies.validation import PhaseReport

TRAIN_KEYS = ("train_loss", "start_perplexity", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "round_steps", "num-examples", "learning_rate")
EVAL_KEYS = ("eval_loss", "eval_perplexity", "eval_bits_per_byte")
RECORD_LEVEL_KEYS = ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps")
# Keys whose values are numbers wherever they appear in metrics.json (so "inf" there means ∞).
NUMERIC_KEYS = frozenset(TRAIN_KEYS + EVAL_KEYS + ("planned_epsilon", "clipping_norm", "expected_clients"))


def loads_metrics(text: str) -> dict[str, Any]:
    """Parse metrics.json text; "inf" in a numeric field becomes float("inf")."""
    return strict_json.loads(text, NUMERIC_KEYS)


def load_metrics(path: Path) -> dict[str, Any]:
    return loads_metrics(Path(path).read_text())


def dumps_metrics(data: dict[str, Any]) -> str:
    """Strict JSON (no NaN / Infinity tokens): non-finite numbers are written as strings."""
    return strict_json.dumps(data, indent=2)


MAX_REASON = 600  # characters of a device's error text kept: its start and its end (a traceback's last line)


def _node_label(node_id: int, phase: str) -> str:
    return f"node {node_id}" if phase == "train" else f"node {node_id} ({phase})"


def _reason(text: str) -> str:
    if len(text) <= MAX_REASON:
        return text
    head, tail = MAX_REASON // 3, MAX_REASON - MAX_REASON // 3
    return f"{text[:head]} … ({len(text) - MAX_REASON} characters left out) … {text[-tail:]}"


@dataclass
class RunRecord:
    config: RunConfig
    out_dir: Path
    rounds: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    record_level: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[int, list[str]] = field(default_factory=dict)  # round -> "node N: reason" (error replies)
    upload_bytes: dict[int, dict[str, int]] = field(default_factory=dict)
    client_level: dict[int, dict[str, Any]] = field(default_factory=dict)  # round -> DP-FedAvg accounting
    secure: dict[int, dict[str, Any]] = field(default_factory=dict)  # round -> what its secure aggregation did
    seconds: dict[int, dict[str, float]] = field(default_factory=dict)  # round -> phase -> wall seconds
    rejections: dict[int, list[str]] = field(default_factory=dict)  # round -> "node N: reason" (refused content)
    dropouts: dict[int, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)  # round -> phase -> nodes
    replies: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)  # round -> phase -> counts
    initial_evaluation: dict[str, dict[str, Any]] = field(default_factory=dict)  # client -> metrics of round 0
    identify: dict[int, dict[str, Any]] = field(default_factory=dict)  # round the server (re)started at -> summary
    resumes: list[dict[str, Any]] = field(default_factory=list)
    # phase -> field -> {"mechanisms": {declared mechanism: replies}}: everything that left the devices
    released: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def _client(self, server_round: int, client_id: str) -> dict[str, Any]:
        return self.rounds.setdefault(server_round, {}).setdefault(client_id, {"client_id": client_id})

    def add_phase(self, report: PhaseReport) -> None:
        """Record one phase of a round: accepted replies' metrics, rejections, failures, dropouts."""
        server_round, phase = report.server_round, report.phase
        summary = {
            "sent": len(report.sent),
            "accepted": len(report.accepted),
            "rejected": len(report.rejected),
            "failed": len(report.failed),
            "no_reply": len(report.dropouts()),
            "minimum": report.minimum,
            "aggregated": report.aggregated,
            **({"note": report.note} if report.note else {}),
        }
        dropouts = [{"node_id": node, "client_id": report.client_of.get(node)} for node in report.dropouts()]
        failures = [f"{_node_label(n, phase)}: {_reason(reason)}" for n, reason in report.failed]
        rejected = [f"{_node_label(n, phase)}: {_reason(reason)}" for n, reason in report.rejected]
        if phase == "identify":  # before the first round of this server process: who is which client
            for accepted in report.accepted:
                self._add_released(phase, accepted.released)
            self.identify[server_round] = {"replies": summary, "dropouts": dropouts, "failures": failures, "rejected": rejected}
            if server_round == 0:  # the initial adapter, evaluated on every device before round 1
                for accepted in report.accepted:
                    self.initial_evaluation[accepted.client_id] = {k: accepted.metrics[k] for k in EVAL_KEYS if k in accepted.metrics}
            return
        for accepted in report.accepted:
            self._add_released(phase, accepted.released)
            metrics = accepted.metrics
            entry = self._client(server_round, accepted.client_id)
            if phase == "train":
                entry["trained"] = True
                entry.update({k: metrics[k] for k in TRAIN_KEYS if k in metrics})
                self.upload_bytes.setdefault(server_round, {})[accepted.client_id] = accepted.upload_bytes
                if self.config.record_dp and all(k in metrics for k in RECORD_LEVEL_KEYS):
                    self.record_level[accepted.client_id] = {
                        **{k: float(metrics[k]) for k in RECORD_LEVEL_KEYS if k != "steps"},
                        "steps": int(metrics["steps"]),
                        "accountant": self.config.accountant,
                        "last_round": server_round,
                        **({"noise_source": accepted.noise_source} if accepted.noise_source else {}),
                    }
            else:
                entry.update({k: metrics[k] for k in EVAL_KEYS if k in metrics})
                entry.setdefault("trained", False)
        if failures:
            self.failures.setdefault(server_round, []).extend(failures)
        if rejected:
            self.rejections.setdefault(server_round, []).extend(rejected)
        self.dropouts.setdefault(server_round, {})[phase] = dropouts
        self.replies.setdefault(server_round, {})[phase] = summary

    def _add_released(self, phase: str, fields: dict[str, str]) -> None:
        seen = self.released.setdefault(phase, {})
        for name, mechanism in fields.items():
            counts = seen.setdefault(name, {"mechanisms": {}})["mechanisms"]
            counts[mechanism] = counts.get(mechanism, 0) + 1

    # ---- metrics.json --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        rounds = []
        for server_round in sorted(set(self.rounds) | set(self.replies)):
            clients = self.rounds.get(server_round, {})
            rounds.append(
                {
                    "round": server_round,
                    "clients": [clients[cid] for cid in sorted(clients)],
                    "upload_bytes": self.upload_bytes.get(server_round, {}),
                    "failures": self.failures.get(server_round, []),
                    "rejected": self.rejections.get(server_round, []),
                    "dropouts": self.dropouts.get(server_round, {}),
                    "replies": self.replies.get(server_round, {}),
                    **({"client_level": self.client_level[server_round]} if server_round in self.client_level else {}),
                    **({"secure_aggregation": self.secure[server_round]} if server_round in self.secure else {}),
                    **({"seconds": self.seconds[server_round]} if server_round in self.seconds else {}),
                }
            )
        privacy: dict[str, Any] = {
            "mode": self.config.dp_mode,
            # what record-level ε covers: only what left the device (uploads), or also its on-device training (all)
            **({"record_level_scope": self.config.dp_scope} if self.config.record_dp else {}),
            "record_level": {cid: self.record_level[cid] for cid in sorted(self.record_level)},
            "secure_aggregation": self.config.secure_aggregation_on,  # the server saw only sums of updates
        }
        if self.client_level:
            privacy["client_level"] = self.client_level[max(self.client_level)]
        if self.config.dp_mode == "none":
            privacy["note"] = "DP disabled (--dp none / --no-dp): no formal privacy guarantee"
        return {
            "config": self.config.as_dict(),
            "rounds": rounds,
            "privacy": privacy,
            "initial_evaluation": {cid: self.initial_evaluation[cid] for cid in sorted(self.initial_evaluation)},
            "identify": {str(r): self.identify[r] for r in sorted(self.identify)},
            "released": {phase: {name: self.released[phase][name] for name in sorted(self.released[phase])} for phase in sorted(self.released)},
            **({"resumes": self.resumes} if self.resumes else {}),
            **self.extra,
        }

    @classmethod
    def from_json(cls, config: RunConfig, out_dir: Path, data: dict[str, Any]) -> RunRecord:
        """The record `to_json` wrote (numbers decoded by `loads_metrics`), to continue a resumed run."""
        record = cls(config=config, out_dir=Path(out_dir))
        for entry in data["rounds"]:
            server_round = int(entry["round"])
            if entry["clients"]:
                record.rounds[server_round] = {c["client_id"]: dict(c) for c in entry["clients"]}
            for name, target in (("upload_bytes", record.upload_bytes), ("dropouts", record.dropouts),
                                 ("replies", record.replies), ("failures", record.failures), ("rejected", record.rejections)):
                if entry.get(name):
                    target[server_round] = type(entry[name])(entry[name])
            if "client_level" in entry:
                record.client_level[server_round] = dict(entry["client_level"])
            if "secure_aggregation" in entry:
                record.secure[server_round] = dict(entry["secure_aggregation"])
            if "seconds" in entry:
                record.seconds[server_round] = dict(entry["seconds"])
        record.record_level = {cid: dict(v) for cid, v in data["privacy"]["record_level"].items()}
        record.initial_evaluation = {cid: dict(v) for cid, v in data.get("initial_evaluation", {}).items()}
        record.identify = {int(r): dict(v) for r, v in data.get("identify", {}).items()}
        record.resumes = list(data.get("resumes", []))
        record.released = {phase: {name: {"mechanisms": dict(v["mechanisms"])} for name, v in fields.items()}
                           for phase, fields in data.get("released", {}).items()}
        known = {"config", "rounds", "privacy", "initial_evaluation", "identify", "resumes", "released"}
        record.extra = {k: v for k, v in data.items() if k not in known}
        return record

    def save(self) -> Path:
        path = self.out_dir / "metrics.json"
        write_atomically(path, dumps_metrics(self.to_json()))
        return path
