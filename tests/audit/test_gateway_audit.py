"""audit.gateway: a tampered outgoing log and a planted identifier are caught by the independent re-scan."""

from __future__ import annotations

import json

import pytest

from audit.gateway import IndependentDetector, audit_gateway
from client.gateway.keys import DeviceKey
from client.gateway.outgoing_log import LOG_NAME, OutgoingLog

URL = "http://127.0.0.1:8765/v1/chat/completions"


@pytest.fixture(scope="module")
def detector():
    return IndependentDetector()


def _log(state_dir, prompts):
    log = OutgoingLog(state_dir / LOG_NAME, DeviceKey.load_or_create(state_dir))
    for prompt in prompts:
        log.append(url=URL, body={"model": "m", "messages": [{"role": "user", "content": prompt}]})
    return state_dir / LOG_NAME


def test_a_clean_log_of_sanitized_prompts_passes(tmp_path, detector):
    _log(tmp_path, ["Summarize the plan for [PERSON_1], reachable at [PHONE_1].", "What does [DATE_1] mean for [MRN_1]?"])
    check = audit_gateway(tmp_path, detector=detector)
    assert check.status == "pass", check.findings
    assert check.details["entries"] == 2 and check.details["bytes_sent"] > 0 and URL in check.details["destinations"]


def test_a_planted_identifier_is_found(tmp_path, detector):
    _log(tmp_path, ["Summarize the plan for [PERSON_1].", "Email the results to jane.roe@example.org or call (415) 555-0142."])
    check = audit_gateway(tmp_path, detector=detector)
    assert check.status == "fail"
    kinds = {f.message.split(" ")[0] for f in check.findings}
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER"} <= kinds and all(f.subject == "entry 2" for f in check.findings)


def test_a_tampered_log_fails_its_integrity_check(tmp_path, detector):
    path = _log(tmp_path, ["Summarize the plan for [PERSON_1].", "And for [PERSON_2]?"])
    lines = path.read_text().splitlines()
    entry = json.loads(lines[0])
    entry["body"]["messages"][0]["content"] = "Summarize the plan for [PERSON_9]."
    path.write_text("\n".join([json.dumps(entry, separators=(",", ":"), sort_keys=True), *lines[1:]]) + "\n")
    check = audit_gateway(tmp_path, detector=detector)
    assert check.status == "fail" and any("integrity" in f.message for f in check.findings)


def test_no_log_is_skipped(tmp_path, detector):
    assert audit_gateway(tmp_path, detector=detector).status == "skipped"
