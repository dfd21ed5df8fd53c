"""The run record: per-round, per-client metrics and the privacy each client has spent.

Written to `metrics.json` after every round, so a crashed or interrupted run still leaves what it did.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import Message

from fedpriv.config import RunConfig

TRAIN_KEYS = ("train_loss", "start_perplexity", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "round_steps", "num-examples", "learning_rate")
EVAL_KEYS = ("eval_loss", "eval_perplexity", "eval_bits_per_byte")


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; write null rather than an invalid file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class RunRecord:
    config: RunConfig
    out_dir: Path
    rounds: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    record_level: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[int, list[str]] = field(default_factory=dict)
    upload_bytes: dict[int, dict[str, int]] = field(default_factory=dict)
    client_level: dict[int, dict[str, Any]] = field(default_factory=dict)  # round -> DP-FedAvg accounting
    rejections: dict[int, list[str]] = field(default_factory=dict)  # round -> "node N: reason"
    extra: dict[str, Any] = field(default_factory=dict)

    def _client(self, server_round: int, client_id: str) -> dict[str, Any]:
        return self.rounds.setdefault(server_round, {}).setdefault(client_id, {"client_id": client_id})

    def add_train_replies(self, server_round: int, replies: list[Message]) -> None:
        for msg in replies:
            if msg.has_error():
                self.failures.setdefault(server_round, []).append(f"node {msg.metadata.src_node_id}: {msg.error.reason}")
                continue
            client_id = str(msg.content["client"]["client-id"])
            metrics = msg.content["metrics"]
            entry = self._client(server_round, client_id)
            entry["trained"] = True
            entry.update({k: _clean(metrics[k]) for k in TRAIN_KEYS if k in metrics})
            if "arrays" in msg.content:
                self.upload_bytes.setdefault(server_round, {})[client_id] = msg.content["arrays"].count_bytes()
            if self.config.record_dp and "epsilon" in metrics:
                self.record_level[client_id] = {
                    "epsilon": float(metrics["epsilon"]),
                    "delta": float(metrics["delta"]),
                    "noise_multiplier": float(metrics["noise_multiplier"]),
                    "sample_rate": float(metrics["sample_rate"]),
                    "steps": int(metrics["steps"]),
                    "accountant": self.config.accountant,
                    "last_round": server_round,
                }

    def add_evaluate_replies(self, server_round: int, replies: list[Message]) -> None:
        for msg in replies:
            if msg.has_error():
                self.failures.setdefault(server_round, []).append(f"node {msg.metadata.src_node_id} (evaluate): {msg.error.reason}")
                continue
            entry = self._client(server_round, str(msg.content["client"]["client-id"]))
            metrics = msg.content["metrics"]
            entry.update({k: _clean(metrics[k]) for k in EVAL_KEYS if k in metrics})
            entry.setdefault("trained", False)

    def to_json(self) -> dict[str, Any]:
        rounds = []
        for server_round in sorted(self.rounds):
            clients = [self.rounds[server_round][cid] for cid in sorted(self.rounds[server_round])]
            rounds.append(
                {
                    "round": server_round,
                    "clients": clients,
                    "upload_bytes": self.upload_bytes.get(server_round, {}),
                    "failures": self.failures.get(server_round, []),
                    "rejected": self.rejections.get(server_round, []),
                    **({"client_level": self.client_level[server_round]} if server_round in self.client_level else {}),
                }
            )
        privacy: dict[str, Any] = {
            "mode": self.config.dp_mode,
            "record_level": {cid: self.record_level[cid] for cid in sorted(self.record_level)},
        }
        if self.client_level:
            privacy["client_level"] = self.client_level[max(self.client_level)]
        if self.config.dp_mode == "none":
            privacy["note"] = "DP disabled (--dp none / --no-dp): no formal privacy guarantee"
        return {"config": self.config.as_dict(), "rounds": rounds, "privacy": privacy, **self.extra}

    def save(self) -> Path:
        path = self.out_dir / "metrics.json"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.out_dir, prefix=".metrics-")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_json(), handle, indent=2)
        os.replace(tmp, path)
        return path
