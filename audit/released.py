"""What left the devices: every field of every reply the server received, and the mechanism covering it.

The server records, per message type, each field replies carried and the mechanism the device
declared for it (metrics.json "released"; declarations from `fedpriv.released`). Under DP, a
field covered by nothing ("none") or not declared at all is a failure: it is a channel around ε.
Client-level DP without secure aggregation is central DP: the server sees each clipped update in
the clear, which the audit notes, since that trusts the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.checks import FAIL, SKIPPED, Check, Finding, verdict

UNCOVERED = ("none", "undeclared")


def audit_released(metrics: Mapping[str, Any]) -> Check:
    released = metrics.get("released")
    mode = metrics.get("privacy", {}).get("mode", "none")
    if not released:
        return Check("released", SKIPPED, "metrics.json records no released fields (a run from before the audit existed)")
    findings: list[Finding] = []
    rows = []
    for message_type, fields in sorted(released.items()):
        for name, info in sorted(fields.items()):
            mechanism = str(info.get("mechanism", "undeclared"))
            rows.append({"message": message_type, "field": name, "mechanism": mechanism, "replies": info.get("replies", 0)})
            if mode != "none" and mechanism in UNCOVERED:
                findings.append(Finding(FAIL, f"{message_type}:{name}", f"left the devices under DP mode {mode!r} with no mechanism covering it ({mechanism})"))
    config = metrics.get("config", {})
    if mode in ("client", "both") and not config.get("secure_aggregation"):
        findings.append(Finding("note", "arrays", "client-level DP without secure aggregation: the server sees each device's "
                                                   "clipped update before adding noise (central DP, the server is trusted)"))
    covered = sum(r["mechanism"] not in UNCOVERED for r in rows)
    summary = f"{len(rows)} field(s) released under DP mode {mode}: {covered} covered, {len(rows) - covered} not"
    return Check("released", verdict(findings), summary, {"mode": mode, "fields": rows}, findings)
