"""End to end: a small DP simulation with canaries, audited with `fedpriv audit`; the same run with
its ε edited fails the accounting audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

pytestmark = pytest.mark.slow
FEDPRIV = [sys.executable, "-m", "fedpriv.cli"]


def _run(args: list[str], ray_tmpdir: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FEDPRIV, *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "RAY_TMPDIR": ray_tmpdir})


def test_a_dp_run_passes_its_audit_and_an_edited_epsilon_fails_it(tmp_path):
    out = tmp_path / "run"
    ray_tmpdir = tempfile.mkdtemp(prefix="fpray", dir="/tmp")
    simulate = _run(["simulate", "--num-clients", "2", "--rounds", "1", "--records-per-client", "40", "--canaries", "40",
                     "--no-progress", "--out", str(out)], ray_tmpdir)
    assert simulate.returncode == 0, simulate.stderr[-3000:]

    audited = _run(["audit", str(out), "--reference-models", "1"], ray_tmpdir)
    assert audited.returncode == 0, audited.stdout[-2000:] + audited.stderr[-2000:]
    report = json.loads((out / "audit.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert report["passed"] and {"accounting", "released"} <= set(checks)
    assert checks["accounting"]["status"] == "pass" and checks["released"]["status"] == "pass"
    released = checks["released"]["details"]
    assert not [f for f in released["fields"] if f["field"].startswith("metrics.") and "train_loss" in f["field"]]
    assert all("seeded" in source for source in released["noise_generators"].values())  # a simulation's default
    one_run = next(c for c in report["checks"] if c["name"].startswith("one-run"))
    assert one_run["status"] == "pass" and (out / "audit.md").is_file()

    metrics_path = out / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    client = next(iter(metrics["privacy"]["record_level"]))
    metrics["privacy"]["record_level"][client]["epsilon"] *= 0.5  # a run that claims half what it spent
    metrics_path.write_text(json.dumps(metrics))
    edited = _run(["audit", "accounting", str(out)], ray_tmpdir)
    assert edited.returncode == 1
    failed = json.loads((out / "audit.json").read_text())["checks"][0]
    assert failed["status"] == "fail" and any(client in f["subject"] for f in failed["findings"])
