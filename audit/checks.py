"""What every audit check returns: a verdict, the numbers behind it, and what it looked at."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass
class Finding:
    """One thing a check found wrong (or notable), with where it was found."""

    severity: str  # FAIL: breaks a claim; "note": worth reading, not a failure
    subject: str  # e.g. a client id, a log line, a field
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "subject": self.subject, "message": self.message}


@dataclass
class Check:
    name: str  # "accounting", "one-run", "membership-inference", "exposure", "gateway", "released-fields"
    status: str  # PASS / FAIL / SKIPPED
    summary: str  # one line for the report
    details: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # file names in the run directory

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "details": self.details,
                "findings": [f.to_dict() for f in self.findings], "plots": self.plots}


def verdict(findings: list[Finding]) -> str:
    return FAIL if any(f.severity == FAIL for f in findings) else PASS
