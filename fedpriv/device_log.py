"""A device's own log of what it measured: `<state-dir>/<client-id>/device_log.jsonl`.

Under DP a reply carries only what a mechanism covers (client/replies.py); the training loss and the
held-out metrics a device measures each round stay here, on the device. One strict-JSON line per
instruction: {"phase": "train" | "evaluate", "round": N, "metrics": {...}}. A simulation's devices
keep their folders under the run directory, so its report reads them (`device_metrics`); a real
deployment's server never sees them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedpriv import strict_json

DEVICE_LOG = "device_log.jsonl"
PHASES = ("train", "evaluate")


def append_entry(folder: Path, phase: str, server_round: int, metrics: Mapping[str, float | int]) -> None:
    """Add one line to the device's log (created 0600: it holds what the device keeps to itself)."""
    if phase not in PHASES:
        raise ValueError(f"device log phase must be one of {', '.join(PHASES)}, got {phase!r}")
    folder.mkdir(parents=True, exist_ok=True)
    line = strict_json.dumps({"phase": phase, "round": int(server_round), "metrics": dict(metrics)}) + "\n"
    path = folder / DEVICE_LOG
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line  # a line torn by a crash stays alone, so this one still parses
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(line)


def read_entries(folder: Path) -> list[dict[str, Any]]:
    """Every well-formed line of the device's log, in order (a torn last line is skipped)."""
    path = Path(folder) / DEVICE_LOG
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("phase") in PHASES and isinstance(entry.get("round"), int) \
                and isinstance(entry.get("metrics"), dict):
            entries.append({**entry, "metrics": {k: strict_json.decode_number(v) for k, v in entry["metrics"].items()}})
    return entries


def device_metrics(state_dir: Path) -> dict[int, dict[str, dict[str, float | int]]]:
    """round -> client id -> the metrics every device of `state_dir` logged for that round (train
    and evaluate merged; a later line for the same round, as after a resume, wins)."""
    merged: dict[int, dict[str, dict[str, float | int]]] = {}
    root = Path(state_dir)
    if not root.is_dir():
        return merged
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for entry in read_entries(folder):
            merged.setdefault(entry["round"], {}).setdefault(folder.name, {}).update(entry["metrics"])
    return merged


def fill_from_logs(
    rounds: Mapping[int, Mapping[str, Mapping[str, Any]]],
    initial: Mapping[str, Mapping[str, Any]],
    logged: Mapping[int, Mapping[str, Mapping[str, Any]]],
) -> tuple[dict[int, dict[str, dict[str, Any]]], dict[str, dict[str, Any]], bool]:
    """Per-round client entries (and the round-0 evaluation) completed with what the devices logged:
    a key the server's record lacks (under DP: the losses and held-out metrics) is taken from the
    device's log; what the server recorded is never overwritten. Returns copies, and whether
    anything was filled in."""
    filled = False
    out_rounds = {r: {c: dict(e) for c, e in clients.items()} for r, clients in rounds.items()}
    out_initial = {c: dict(e) for c, e in initial.items()}
    for server_round, clients in logged.items():
        target = out_initial if server_round == 0 else out_rounds.get(server_round)
        if target is None:
            continue
        for client_id, metrics in clients.items():
            if server_round != 0 and client_id not in target:
                continue  # the server did not accept this device's reply that round
            entry = target.setdefault(client_id, {})
            for key, value in metrics.items():
                if key not in entry:
                    entry[key] = value
                    filled = True
    return out_rounds, out_initial, filled


def round_with_logs(server_round: int, clients: Mapping[str, Mapping[str, Any]], state_dir: Path) -> dict[str, dict[str, Any]]:
    """One round's client entries (client id -> entry) completed with what the devices under
    `state_dir` logged for it (`fill_from_logs`)."""
    rounds, _, _ = fill_from_logs({server_round: clients}, {}, device_metrics(state_dir))
    return rounds[server_round]
