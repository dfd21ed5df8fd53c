"""Accounting audit: recompute every ε a run reports, independently, and hold it against the claims.

Record-level ε is recomputed per device with dp-accounting's PLD accountant (the run itself uses
Opacus' PRV or RDP accountant) from the recorded noise multiplier, sample rate, steps and δ:
DP-SGD with Poisson sampling is `steps` compositions of PoissonSampled(q, Gaussian(σ)). Client-level
ε is recomputed the same way from its σ, client sample rate and rounds. A recomputed ε that differs
from the reported one by more than the tolerance, a device over its budget, and a server record
below the device's own ledger (a forged or stale reply lowered it) are failures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.privacy_accountant import NeighboringRelation

from audit.checks import FAIL, SKIPPED, Check, Finding, verdict

TOLERANCE = 0.05  # |reported − recomputed| above this is a disagreement (PRV and PLD agree to ~0.01)
LEDGER_FILE = "privacy_ledger.json"  # client.device.LEDGER_FILE; read as data, the audit does not run the device
Segment = tuple[float, float, int]  # (noise multiplier, sample rate, steps or rounds)


def pld_epsilon(segments: Iterable[Segment], delta: float) -> float:
    """ε of the composition of Poisson-subsampled Gaussian segments, by PLD (add/remove adjacency)."""
    accountant = pld_privacy_accountant.PLDAccountant(NeighboringRelation.ADD_OR_REMOVE_ONE, value_discretization_interval=1e-4)
    composed = False
    for sigma, rate, count in segments:
        if count <= 0:
            continue
        if sigma <= 0:
            return math.inf
        event = dp_event.GaussianDpEvent(sigma)
        if rate < 1.0:
            event = dp_event.PoissonSampledDpEvent(rate, event)
        accountant.compose(event, int(count))
        composed = True
    return float(accountant.get_epsilon(delta)) if composed else 0.0


def read_ledger(path: Path) -> list[Segment]:
    raw = json.loads(Path(path).read_text())
    return [(float(s[0]), float(s[1]), int(s[2])) for s in raw["history"]]


def audit_accounting(metrics: Mapping[str, Any], devices_dir: Path | None = None, tolerance: float = TOLERANCE) -> Check:
    """Check a run's metrics.json (and, where at hand, each device's own ledger under `devices_dir`)."""
    findings: list[Finding] = []
    config = metrics.get("config", {})
    privacy = metrics.get("privacy", {})
    rows: dict[str, Any] = {}
    budget = float(config.get("target_epsilon") or 0.0)
    for client_id, entry in sorted((privacy.get("record_level") or {}).items()):
        row = _record_level_row(client_id, entry, devices_dir, budget, tolerance, findings)
        rows[client_id] = row
    client_level = privacy.get("client_level")
    client_row = _client_level_row(client_level, config, tolerance, findings) if client_level else None
    if not rows and client_row is None:
        mode = privacy.get("mode", "none")
        status = SKIPPED if mode == "none" else FAIL
        if status == FAIL:
            findings.append(Finding(FAIL, "privacy", f"DP mode {mode!r} but metrics.json records no ε at all"))
        return Check("accounting", status, f"no ε recorded (DP mode {mode})", {"mode": mode}, findings)
    status = verdict(findings)
    worst = max((r["reported"] for r in rows.values()), default=None)
    summary = (f"{len(rows)} device(s) recomputed by PLD" + (f", max reported ε {worst:.3f}" if worst is not None else "")
               + (f"; client-level ε {client_row['reported']:.3f} recomputed {client_row['recomputed']:.3f}" if client_row else "")
               + f"; {sum(f.severity == FAIL for f in findings)} failure(s)")
    return Check("accounting", status, summary, {"tolerance": tolerance, "record_level": rows, "client_level": client_row,
                                                 "target_epsilon": budget or None}, findings)


def _record_level_row(client_id: str, entry: Mapping[str, Any], devices_dir: Path | None, budget: float, tolerance: float,
                      findings: list[Finding]) -> dict[str, Any]:
    try:
        reported = float(entry["epsilon"])
        delta = float(entry["delta"])
        sigma, rate, steps = float(entry["noise_multiplier"]), float(entry["sample_rate"]), int(entry["steps"])
    except (KeyError, TypeError, ValueError) as err:
        findings.append(Finding(FAIL, client_id, f"record-level entry unreadable ({err})"))
        return {"reported": math.nan}
    recomputed = pld_epsilon([(sigma, rate, steps)], delta)
    row: dict[str, Any] = {"reported": reported, "recomputed": recomputed, "delta": delta, "noise_multiplier": sigma,
                           "sample_rate": rate, "steps": steps}
    if not abs(reported - recomputed) <= tolerance:
        findings.append(Finding(FAIL, client_id, f"reported ε {reported:.4f} but the recorded σ={sigma:.4g}, q={rate:.4g}, "
                                                 f"{steps} steps, δ={delta:g} give {recomputed:.4f} (PLD)"))
    if budget > 0 and recomputed > budget + tolerance:
        findings.append(Finding(FAIL, client_id, f"ε {recomputed:.4f} is over the budget target-epsilon {budget:g}"))
    ledger_path = Path(devices_dir) / client_id / LEDGER_FILE if devices_dir else None
    if ledger_path is not None and ledger_path.is_file():
        try:
            history = read_ledger(ledger_path)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            findings.append(Finding(FAIL, client_id, f"{ledger_path}: ledger unreadable ({err})"))
            return row
        own = pld_epsilon(history, delta)
        row.update({"ledger_epsilon": own, "ledger_steps": sum(s for _, _, s in history)})
        if reported < own - tolerance:
            findings.append(Finding(FAIL, client_id, f"the server records ε {reported:.4f}, below the device's own ledger "
                                                     f"({own:.4f} over {row['ledger_steps']} steps): the record understates what was spent"))
        if budget > 0 and own > budget + tolerance:
            findings.append(Finding(FAIL, client_id, f"the device's ledger shows ε {own:.4f}, over target-epsilon {budget:g}"))
    return row


def _client_level_row(entry: Mapping[str, Any], config: Mapping[str, Any], tolerance: float, findings: list[Finding]) -> dict[str, Any]:
    try:
        reported = float(entry["epsilon"])
        delta = float(entry["delta"])
        sigma, rate, rounds = float(entry["noise_multiplier"]), float(entry["sample_rate"]), int(entry["rounds"])
        sampling = str(entry.get("sampling", "poisson"))
    except (KeyError, TypeError, ValueError) as err:
        findings.append(Finding(FAIL, "client-level", f"entry unreadable ({err})"))
        return {"reported": math.nan, "recomputed": math.nan}
    row = {"reported": reported, "delta": delta, "noise_multiplier": sigma, "sample_rate": rate, "rounds": rounds, "sampling": sampling}
    if sampling == "fixed":  # replace-one RDP: a different neighbouring relation; not recomputed by PLD here
        findings.append(Finding("note", "client-level", "fixed-size sampling is accounted by RDP under replace-one adjacency; not recomputed"))
        row["recomputed"] = math.nan
        return row
    recomputed = pld_epsilon([(sigma, 1.0 if sampling == "all" else rate, rounds)], delta)
    row["recomputed"] = recomputed
    if not abs(reported - recomputed) <= tolerance:
        findings.append(Finding(FAIL, "client-level", f"reported ε {reported:.4f} but σ={sigma:.4g}, q={rate:.4g}, {rounds} rounds, "
                                                       f"δ={delta:g} give {recomputed:.4f} (PLD)"))
    budget = float(config.get("client_target_epsilon") or 0.0)
    if budget > 0 and recomputed > budget + tolerance:
        findings.append(Finding(FAIL, "client-level", f"ε {recomputed:.4f} is over client-target-epsilon {budget:g}"))
    return row
