"""`fedpriv audit [PART] RUN_DIR` and `fedpriv audit gateway STATE_DIR`: check a run's privacy claims.

Writes audit.md, audit.json and PNG plots into the directory audited, and exits 1 when any check
fails (so it can gate a release), 2 on a usage or data error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PARTS = ("all", "accounting", "released", "one-run", "mia", "exposure", "gateway")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "audit",
        help="check every privacy claim of a run (ε recomputed, canaries, membership inference, gateway log)",
        description=(
            "Audit a finished run directory: recompute every ε with dp-accounting's PLD accountant and cross-check the "
            "devices' ledgers (accounting); list every field that left the devices and the mechanism covering it "
            "(released); the one-run canary lower bound on ε (one-run, needs `fedpriv simulate --canaries M`); loss and "
            "offline-LiRA membership inference on the global and personalized adapters (mia); secret-canary exposure "
            "(exposure). `fedpriv audit gateway STATE_DIR` audits a device's outgoing gateway log instead. "
            "Exit status 1 if any check fails."
        ),
    )
    cmd.add_argument("part", nargs="?", choices=PARTS, default="all", help="which part (default: all the run-directory parts)")
    cmd.add_argument("target", metavar="RUN_DIR", help="a run directory (for `gateway`: the gateway's state directory)")
    cmd.add_argument("--reference-models", type=int, default=4, metavar="K", help="mia: reference models for offline LiRA (0 = the base model)")
    cmd.add_argument("--log", help="gateway: the outgoing log (default: STATE_DIR/outgoing.jsonl)")
    cmd.add_argument("--public-key", help="gateway: the device public key (default: STATE_DIR/device_ed25519.pub)")
    cmd.set_defaults(func=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from rich.console import Console

    from audit.report import exit_status, write_report
    from fedpriv.errors import ConfigError

    console = Console(stderr=True)
    target = Path(args.target).expanduser()
    if not target.is_dir():
        raise ConfigError("RUN_DIR", f"{target} is not a directory")
    if args.reference_models < 0:
        raise ConfigError("reference-models", f"must be zero or more, got {args.reference_models}")
    with console.status("auditing ...") as status:
        if args.part == "gateway":
            from audit.gateway import audit_gateway

            checks = [audit_gateway(target, Path(args.log) if args.log else None, Path(args.public_key) if args.public_key else None)]
        else:
            from audit.run import PARTS as RUN_PARTS
            from audit.run import audit_run

            parts = RUN_PARTS if args.part == "all" else (args.part,)
            checks = audit_run(target, parts, args.reference_models, progress=lambda text: status.update(text))
        report = write_report(target, checks)
    _print(checks, report, console)
    return exit_status(checks)


def _print(checks, report: Path, console) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="privacy audit")
    for column in ("check", "status", "summary"):
        table.add_column(column, overflow="fold")
    colours = {"pass": "green", "fail": "bold red", "skipped": "dim"}
    for check in checks:
        # Text, not markup: summaries and findings hold client ids and field names from the devices.
        table.add_row(Text(check.name), Text(check.status, style=colours.get(check.status, "")), Text(check.summary))
        for finding in check.findings:
            table.add_row("", Text(finding.severity, style=colours.get(finding.severity, "")), Text(f"{finding.subject}: {finding.message}"))
    console.print(table)
    console.print(f"report: {report} (audit.json and plots next to it)")
    print("FAIL" if any(c.failed for c in checks) else "PASS", file=sys.stdout)
