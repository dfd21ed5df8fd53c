"""audit.md and audit.json: every check's verdict, numbers and findings, next to its plots."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from audit.checks import FAIL, Check
from fedpriv import strict_json
from fedpriv.files import write_atomically


def escape_markdown(text: str) -> str:
    """One line of report text: no newlines, table pipes or HTML from a value we did not write."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def write_report(out_dir: Path, checks: list[Check], title: str = "Privacy audit") -> Path:
    failed = [c for c in checks if c.failed]
    record = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "passed": not failed,
              "checks": [c.to_dict() for c in checks]}
    write_atomically(out_dir / "audit.json", strict_json.dumps(record, indent=2))
    lines = [f"# {title}", "", f"Verdict: **{'FAIL' if failed else 'PASS'}** "
             f"({len(checks) - len(failed)} of {len(checks)} checks passed or skipped)", "",
             "| check | status | summary |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.status} | {escape_markdown(c.summary)} |" for c in checks]
    for check in checks:
        lines += ["", f"## {check.name}: {check.status}", "", escape_markdown(check.summary)]
        if check.findings:
            lines += ["", "| severity | subject | finding |", "|---|---|---|"]
            lines += [f"| {f.severity} | {escape_markdown(f.subject)} | {escape_markdown(f.message)} |" for f in check.findings]
        lines += ["", *[f"![{check.name}]({plot})" for plot in check.plots]] if check.plots else []
    path = out_dir / "audit.md"
    write_atomically(path, "\n".join(lines) + "\n")
    return path


def exit_status(checks: list[Check]) -> int:
    return 1 if any(c.status == FAIL for c in checks) else 0
