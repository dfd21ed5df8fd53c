"""Gateway audit: what left a device through the privacy gateway, and whether any of it identifies anyone.

1. The outgoing log's integrity: signatures, hash chain and signed head (`client.gateway.outgoing_log.verify_log`).
2. Every logged outgoing prompt (the request bodies exactly as sent) re-scanned with a detector
   configured independently of the gateway: Presidio's own predefined recognizers (not the
   gateway's recognizers, gazetteers or thresholds) plus `phonenumbers`, and spaCy's named
   entities when an English pipeline is installed. A hit on anything but a gateway placeholder
   ("[PERSON_1]") is a finding.
3. What was sent and how much: entries, bytes, destinations, per conversation.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from audit.checks import FAIL, Check, Finding, verdict

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")
# Presidio entity types that are identifiers (HIPAA Safe Harbor); DATE_TIME and NRP are not, alone.
IDENTIFIER_TYPES = ("PERSON", "LOCATION", "PHONE_NUMBER", "EMAIL_ADDRESS", "US_SSN", "CREDIT_CARD", "IBAN_CODE",
                    "IP_ADDRESS", "URL", "US_DRIVER_LICENSE", "US_PASSPORT", "US_BANK_NUMBER", "MEDICAL_LICENSE", "UK_NHS")
MIN_SCORE = 0.5
# Presidio's e-mail recognizer asks tldextract, which fetches the public suffix list from the web on
# first use unless told otherwise; an empty URL list makes it use its bundled snapshot (offline).
# Read when tldextract is first imported, so set before Presidio is.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")


class IndependentDetector:
    """Presidio's default registry (pattern recognizers with context) plus phonenumbers' matcher."""

    def __init__(self) -> None:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

        registry = RecognizerRegistry()
        registry.load_predefined_recognizers()
        self.nlp_entities = _spacy_available()
        if self.nlp_entities:  # spaCy's English pipeline adds PERSON / LOCATION from its NER
            self.analyzer = AnalyzerEngine(registry=registry, supported_languages=["en"])
        else:  # patterns only; the gateway's blank tokenizer engine is infrastructure, not detection rules
            from client.gateway.sanitizer import BlankSpacyNlpEngine

            self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=BlankSpacyNlpEngine.create(), supported_languages=["en"])

    def find(self, text: str) -> list[tuple[str, str]]:
        """(type, matched text) of every identifier found, gateway placeholders excepted."""
        hits: list[tuple[str, str]] = []
        for result in self.analyzer.analyze(text=text, language="en", entities=list(IDENTIFIER_TYPES), score_threshold=MIN_SCORE):
            value = text[result.start:result.end]
            if not PLACEHOLDER.fullmatch(value.strip()) and not _only_placeholders(value):
                hits.append((result.entity_type, value))
        import phonenumbers

        for match in phonenumbers.PhoneNumberMatcher(text, "US"):
            if ("PHONE_NUMBER", match.raw_string) not in hits:
                hits.append(("PHONE_NUMBER", match.raw_string))
        return hits


def _only_placeholders(value: str) -> bool:
    return not PLACEHOLDER.sub("", value).strip(" ,.;:()-")


@lru_cache(maxsize=1)
def _spacy_available() -> bool:
    try:
        import spacy

        spacy.load("en_core_web_sm")
        return True
    except (ImportError, OSError):
        return False


def outgoing_texts(body: dict[str, Any]) -> Iterable[str]:
    """Every string of a logged request body that carries user content (chat messages, prompts)."""
    for message in body.get("messages", []) or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):
            yield from (part.get("text", "") for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    if isinstance(body.get("prompt"), str):
        yield body["prompt"]


def audit_gateway(state_dir: Path, log_path: Path | None = None, public_key_path: Path | None = None,
                  detector: IndependentDetector | None = None) -> Check:
    from client.gateway.keys import PUBLIC_KEY_NAME, load_public_key
    from client.gateway.outgoing_log import LOG_NAME, canonical_json, read_entries, verify_log

    state_dir = Path(state_dir).expanduser()
    log_path = Path(log_path) if log_path else state_dir / LOG_NAME
    public_key_path = Path(public_key_path) if public_key_path else state_dir / PUBLIC_KEY_NAME
    findings: list[Finding] = []
    if not log_path.exists():
        return Check("gateway", "skipped", f"no outgoing log at {log_path}: nothing was sent from this state dir", {"log": str(log_path)})
    integrity = verify_log(log_path, load_public_key(public_key_path))
    if not integrity.ok:
        findings.append(Finding(FAIL, str(log_path), f"log integrity: {integrity}"))
    entries = read_entries(log_path)
    detector = detector or IndependentDetector()
    destinations: Counter[str] = Counter()
    total_bytes = 0
    found: Counter[str] = Counter()
    for entry in entries:
        body = entry.get("body") or {}
        destinations[str(entry.get("url"))] += 1
        total_bytes += len(canonical_json(body))
        for text in outgoing_texts(body):
            for kind, value in detector.find(text):
                found[kind] += 1
                findings.append(Finding(FAIL, f"entry {entry.get('seq')}", f"{kind} in an outgoing prompt: {value!r}"))
    details = {"log": str(log_path), "entries": len(entries), "bytes_sent": total_bytes, "destinations": dict(destinations),
               "integrity": str(integrity), "detector": "presidio-default+phonenumbers" + ("+spacy-ner" if detector.nlp_entities else ""),
               "identifiers_found": dict(found)}
    status = verdict(findings)
    summary = (f"{len(entries)} outgoing request(s), {total_bytes} bytes to {len(destinations)} destination(s); "
               f"log {'intact' if integrity.ok else 'TAMPERED'}; {sum(found.values())} identifier(s) found by the independent detector")
    return Check("gateway", status, summary, details, findings)
