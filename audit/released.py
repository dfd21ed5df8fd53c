"""What left the devices: every field of every accepted reply, and the mechanism covering it.

The server records, per message type, each field replies carried and the mechanism the device
declared for it (metrics.json "released"; the vocabulary is `fedpriv.released.MECHANISMS`). Under
DP, a field covered by nothing ("none") or not declared at all is a failure: a channel around ε.
Fields declared "public" (the dataset size among them) are listed as not covered by ε. Client-level
DP without secure aggregation is central DP: the server sees each clipped update in the clear,
which the audit notes, since that trusts the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.checks import FAIL, SKIPPED, Check, Finding, verdict
from fedpriv.released import MECHANISMS, UNCOVERED


def audit_released(metrics: Mapping[str, Any]) -> Check:
    released = metrics.get("released")
    mode = metrics.get("privacy", {}).get("mode", "none")
    if not released:
        return Check("released", SKIPPED, "metrics.json records no released fields (a run from before the audit existed)")
    findings: list[Finding] = []
    rows = []
    for message_type, fields in sorted(released.items()):
        for name, info in sorted(fields.items()):
            mechanisms: dict[str, int] = dict(info.get("mechanisms", {}))
            rows.append({"message": message_type, "field": name, "mechanisms": mechanisms,
                         "covers": "; ".join(MECHANISMS.get(m, m) for m in mechanisms)})
            uncovered = {m: n for m, n in mechanisms.items() if m in UNCOVERED}
            if mode != "none" and uncovered:
                findings.append(Finding(FAIL, f"{message_type}:{name}", f"left the devices under DP mode {mode!r} with no mechanism "
                                                                         f"covering it ({', '.join(f'{m} in {n} replies' for m, n in uncovered.items())})"))
            elif mode != "none" and "public" in mechanisms:
                findings.append(Finding("note", f"{message_type}:{name}", "declared public: released as is, not covered by ε"))
    if mode in ("client", "both") and not metrics.get("privacy", {}).get("secure_aggregation"):
        findings.append(Finding("note", "arrays", "client-level DP without secure aggregation: the server sees each device's "
                                                   "clipped update before adding noise (central DP: the server is trusted)"))
    generators = noise_generators(metrics)
    for who, source in sorted(generators.items()):
        if source == NOT_RECORDED:
            findings.append(Finding("note", f"noise:{who}", "the generator of its DP noise is not recorded"))
        elif "seeded" in source:
            findings.append(Finding("note", f"noise:{who}", f"{source} (fine for a reproducible simulation; a deployment needs noise=secure)"))
        else:
            findings.append(Finding("note", f"noise:{who}", source))
    not_covered = sum(1 for r in rows if any(m in UNCOVERED for m in r["mechanisms"]))
    summary = f"{len(rows)} field(s) left the devices under DP mode {mode}: {len(rows) - not_covered} declared with a mechanism, {not_covered} not"
    return Check("released", verdict(findings), summary, {"mode": mode, "fields": rows, "noise_generators": generators}, findings)


NOT_RECORDED = "not recorded"


def noise_generators(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Where each DP mechanism's noise came from: every device's DP-SGD (record level) and the
    server's client-level noise, as the run recorded them."""
    privacy = metrics.get("privacy", {})
    generators = {f"device {cid}": str(entry.get("noise_source") or NOT_RECORDED)
                  for cid, entry in privacy.get("record_level", {}).items()}
    if privacy.get("client_level"):
        generators["server (client-level DP)"] = str(privacy["client_level"].get("noise_source") or NOT_RECORDED)
    return generators
