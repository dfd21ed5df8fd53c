"""Router decisions and the gateway's fail-closed behaviour, with test doubles for the sanitizer
and the local model (the end-to-end test uses the real ones)."""

from __future__ import annotations

import re

import pytest

from client.gateway.cloud import CloudClient
from client.gateway.gateway import Gateway, PromptError, validate_prompt
from client.gateway.keys import DeviceKey
from client.gateway.local_model import LocalAnswer
from client.gateway.outgoing_log import OutgoingLog, read_entries
from client.gateway.router import Policy, Route, Router, leaked_entity_types
from client.gateway.types import Entity, SanitizationError, SanitizedPrompt
from tests.fake_cloud import FakeCloud


class DictSession:
    """Minimal PlaceholderSession (test double)."""

    def __init__(self) -> None:
        self.forward: dict[tuple[str, str], str] = {}
        self.backward: dict[str, str] = {}

    def placeholder_for(self, entity_type: str, original: str) -> str:
        key = (entity_type, original)
        if key not in self.forward:
            n = sum(1 for t, _ in self.forward if t == entity_type) + 1
            self.forward[key] = f"[{entity_type}_{n}]"
            self.backward[self.forward[key]] = original
        return self.forward[key]

    def restore(self, text: str) -> str:
        return re.sub(r"\[[A-Z_]+_\d+\]", lambda m: self.backward.get(m.group(0), m.group(0)), text)


class RegexSanitizer:
    """Sanitizer test double: SSN, phone, email, MRN and a fixed list of names."""

    PATTERNS = [
        ("SSN", r"\b\d{3}-\d{2}-\d{4}\b"),
        ("PHONE", r"\(?\b\d{3}\)?[ -]\d{3}-\d{4}\b"),
        ("EMAIL", r"[\w.+-]+@[\w-]+\.[\w.]+"),
        ("MRN", r"\bMRN[: ]*\d{5,}\b"),
        ("PERSON", r"\b(?:John Smith|Maria Garcia)\b"),
    ]

    def __init__(self, residual_risk: float = 0.0) -> None:
        self.residual_risk = residual_risk
        self.calls = 0

    def sanitize(self, text: str, session=None) -> SanitizedPrompt:
        self.calls += 1
        session = session or DictSession()
        entities = []
        for kind, pattern in self.PATTERNS:
            for m in re.finditer(pattern, text):
                entities.append(Entity(kind, m.start(), m.end(), m.group(0), session.placeholder_for(kind, m.group(0))))
        out = text
        for e in sorted(entities, key=lambda e: e.start, reverse=True):
            out = out[: e.start] + e.replacement + out[e.end :]
        return SanitizedPrompt(text, out, entities, self.residual_risk)


class BrokenSanitizer:
    def sanitize(self, text, session=None):
        raise SanitizationError("NER model failed to load")


class CrashingSanitizer:
    def sanitize(self, text, session=None):
        raise RuntimeError("unexpected bug")


class LeakySanitizer:
    """Claims success but leaves the SSN in (re-formatted): the gateway's safety net must catch it."""

    def sanitize(self, text, session=None):
        return SanitizedPrompt(text, "my ssn is 123 45 6789", [Entity("SSN", 10, 21, "123-45-6789", "[SSN_1]")], 0.0)


class FakeLocal:
    def __init__(self, confidence: float, text: str = "local answer") -> None:
        self.confidence = confidence
        self.text = text
        self.calls = 0

    def answer(self, prompt: str) -> LocalAnswer:
        self.calls += 1
        return LocalAnswer(self.text, self.confidence, -1.0, 2.0, 5)


PROMPT = "Patient John Smith (SSN 123-45-6789, phone 555-867-5309) asks about his MRN 4839201 results."


def make_gateway(tmp_path, url, *, policy="cloud", sanitizer=None, local=None, max_risk=0.05, min_conf=0.5, **cloud_kw):
    key = DeviceKey.load_or_create(tmp_path / "gw")
    log = OutgoingLog(tmp_path / "gw" / "outgoing.jsonl", key)
    cloud_kw.setdefault("timeout", 2.0)
    cloud_kw.setdefault("backoff", 0.01)
    cloud = CloudClient(url, None, log=log, **cloud_kw)
    router = Router(policy, max_residual_risk=max_risk, min_confidence=min_conf)
    gateway = Gateway(
        sanitizer=sanitizer if sanitizer is not None else RegexSanitizer(),
        new_session=DictSession,
        router=router,
        cloud=cloud,
        local=local,
    )
    return gateway, log


# ---- pure router decisions -----------------------------------------------------------------------


def test_router_policies_and_reasons():
    sanitized = SanitizedPrompt("x", "hello [PERSON_1]", [Entity("PERSON", 6, 10, "John", "[PERSON_1]")], 0.01)
    confident, unsure = LocalAnswer("a", 0.9, -0.1, 0.5, 3), LocalAnswer("a", 0.1, -2.3, 4.0, 3)

    local = Router(Policy.LOCAL)
    assert local.after_local(unsure).route is Route.LOCAL

    auto = Router("auto", min_confidence=0.5, max_residual_risk=0.05)
    decision = auto.after_local(confident)
    assert decision.route is Route.LOCAL and "confident" in decision.reason
    assert auto.after_local(unsure) is None
    decision = auto.after_sanitize(sanitized, local=unsure)
    assert decision.route is Route.CLOUD and "not confident (0.10 < 0.50)" in decision.reason

    risky = SanitizedPrompt("x", "hello [PERSON_1]", [], 0.3)
    decision = auto.after_sanitize(risky, local=unsure)
    assert decision.route is Route.REFUSED and "0.30 is above the threshold 0.05" in decision.reason
    assert Router("cloud").after_sanitize(SanitizedPrompt("x", "y", [], float("nan"))).route is Route.REFUSED
    assert Router("cloud").after_sanitize(SanitizedPrompt("x", "   ", [], 0.0)).route is Route.REFUSED


def test_leak_safety_net():
    ok = SanitizedPrompt("x", "born in 2019, call [PHONE_1]", [Entity("DATE", 0, 10, "03/14/2019", "2019"), Entity("PHONE", 0, 12, "555-867-5309", "[PHONE_1]")])
    assert leaked_entity_types(ok) == []
    leaked = SanitizedPrompt("x", "call 555 867 5309 or mail JOHN@x.org", [Entity("PHONE", 0, 12, "555-867-5309", "[PHONE_1]"), Entity("EMAIL", 0, 10, "john@x.org", "[EMAIL_1]")])
    assert leaked_entity_types(leaked) == ["EMAIL", "PHONE"]


# ---- the gateway with a real HTTP endpoint -------------------------------------------------------


def test_local_route_never_contacts_the_cloud(tmp_path):
    sanitizer = RegexSanitizer()
    local = FakeLocal(confidence=0.01, text="on-device answer")
    with FakeCloud() as cloud:
        gateway, log = make_gateway(tmp_path, cloud.url, policy="local", sanitizer=sanitizer, local=local)
        result = gateway.ask(PROMPT)
    assert result.route == "local" and result.answer == "on-device answer"
    assert cloud.requests == [] and read_entries(log.path) == [] and sanitizer.calls == 0


def test_auto_confident_stays_local(tmp_path):
    with FakeCloud() as cloud:
        gateway, log = make_gateway(tmp_path, cloud.url, policy="auto", local=FakeLocal(0.9))
        result = gateway.ask(PROMPT)
    assert result.route == "local" and "confident" in result.reason
    assert cloud.requests == [] and read_entries(log.path) == []


def test_auto_unsure_goes_to_cloud_sanitized(tmp_path):
    with FakeCloud() as cloud:
        gateway, log = make_gateway(tmp_path, cloud.url, policy="auto", local=FakeLocal(0.2))
        result = gateway.ask(PROMPT)
    assert result.route == "cloud" and "not confident" in result.reason
    assert len(cloud.requests) == 1 and b"6789" not in cloud.wire and b"John" not in cloud.wire
    assert "John Smith" in result.answer and "123-45-6789" in result.answer  # restored on the device


def test_auto_refuses_above_residual_risk(tmp_path):
    with FakeCloud() as cloud:
        gateway, log = make_gateway(tmp_path, cloud.url, policy="auto", sanitizer=RegexSanitizer(residual_risk=0.4), local=FakeLocal(0.2))
        result = gateway.ask(PROMPT)
    assert result.route == "refused" and result.answer is None
    assert "residual" in result.reason and "nothing sent" in result.reason
    assert cloud.requests == [] and read_entries(log.path) == []


@pytest.mark.parametrize("sanitizer", [BrokenSanitizer(), CrashingSanitizer(), LeakySanitizer()], ids=["error", "crash", "leak"])
def test_sanitizer_failure_sends_nothing(tmp_path, sanitizer):
    with FakeCloud() as cloud:
        gateway, log = make_gateway(tmp_path, cloud.url, policy="cloud", sanitizer=sanitizer)
        result = gateway.ask("my ssn is 123-45-6789")
    assert result.route == "refused" and "nothing sent" in result.reason
    assert cloud.requests == [] and read_entries(log.path) == []


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t ", "x" * 8001])
def test_bad_prompts_rejected_before_anything(tmp_path, prompt):
    sanitizer = RegexSanitizer()
    local = FakeLocal(0.9)
    with FakeCloud() as cloud:
        gateway, log = make_gateway(tmp_path, cloud.url, policy="auto", sanitizer=sanitizer, local=local)
        with pytest.raises(PromptError):
            gateway.ask(prompt)
    assert cloud.requests == [] and sanitizer.calls == 0 and local.calls == 0
    assert not log.path.exists()


def test_validate_prompt_limits():
    assert validate_prompt("ok", 2) == "ok"
    with pytest.raises(PromptError, match="over the limit of 2"):
        validate_prompt("abc", 2)
    with pytest.raises(PromptError, match="empty"):
        validate_prompt(" \n", 2)
