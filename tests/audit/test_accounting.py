"""audit.accounting: ε recomputed independently by PLD; edited or understated records are caught."""

from __future__ import annotations

import copy
import json

import pytest

from audit.accounting import audit_accounting, pld_epsilon
from client.privacy_ledger import PrivacyLedger
from strategies.accounting import client_level_epsilon

HISTORY = [(1.1, 1 / 13, 39)]


def _metrics(epsilon: float | None = None, target: float = 0.0) -> dict:
    reported = PrivacyLedger("prv", list(HISTORY)).epsilon(1e-5) if epsilon is None else epsilon
    entry = {"epsilon": reported, "delta": 1e-5, "noise_multiplier": 1.1, "sample_rate": 1 / 13, "steps": 39, "accountant": "prv"}
    return {"config": {"target_epsilon": target}, "privacy": {"mode": "record", "record_level": {"hospital-00": entry}}}


def test_pld_agrees_with_the_devices_prv_accountant():
    assert pld_epsilon(HISTORY, 1e-5) == pytest.approx(PrivacyLedger("prv", list(HISTORY)).epsilon(1e-5), abs=0.05)


def test_an_honest_record_passes_and_an_edited_epsilon_fails():
    assert audit_accounting(_metrics()).status == "pass"
    edited = audit_accounting(_metrics(epsilon=0.5))
    assert edited.status == "fail" and "hospital-00" in edited.findings[0].subject and "PLD" in edited.findings[0].message


def test_a_device_over_its_budget_fails():
    check = audit_accounting(_metrics(target=1.0))
    assert check.status == "fail" and any("budget" in f.message for f in check.findings)


def test_a_server_record_below_the_devices_own_ledger_fails(tmp_path):
    # The device trained two more rounds than the server's record says (e.g. a forged reply lowered it).
    metrics = _metrics()
    device = tmp_path / "hospital-00"
    device.mkdir()
    (device / "privacy_ledger.json").write_text(PrivacyLedger("prv", HISTORY * 3).to_json())
    check = audit_accounting(metrics, tmp_path)
    assert check.status == "fail" and any("below the device's own ledger" in f.message for f in check.findings)
    (device / "privacy_ledger.json").write_text(PrivacyLedger("prv", list(HISTORY)).to_json())
    assert audit_accounting(metrics, tmp_path).status == "pass"


def test_client_level_epsilon_is_recomputed():
    eps = client_level_epsilon(noise_multiplier=1.0, sample_rate=0.5, rounds=4, delta=1e-5)
    entry = {"epsilon": eps, "delta": 1e-5, "noise_multiplier": 1.0, "sample_rate": 0.5, "rounds": 4, "sampling": "poisson"}
    metrics = {"config": {}, "privacy": {"mode": "client", "record_level": {}, "client_level": entry}}
    assert audit_accounting(metrics).status == "pass"
    forged = copy.deepcopy(metrics)
    forged["privacy"]["client_level"]["epsilon"] = eps / 2
    assert audit_accounting(forged).status == "fail"


def test_no_dp_is_skipped_but_dp_without_any_epsilon_fails():
    assert audit_accounting({"privacy": {"mode": "none", "record_level": {}}}).status == "skipped"
    assert audit_accounting({"privacy": {"mode": "record", "record_level": {}}}).status == "fail"


def test_report_is_valid_json(tmp_path):
    from audit.report import write_report

    write_report(tmp_path, [audit_accounting(_metrics(epsilon=0.5))])
    record = json.loads((tmp_path / "audit.json").read_text())
    assert record["passed"] is False and record["checks"][0]["name"] == "accounting"
    assert "FAIL" in (tmp_path / "audit.md").read_text()
