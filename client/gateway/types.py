"""Interfaces shared inside the privacy gateway (sanitizer <-> router/cloud client/log).

The sanitizer side (detection, abstraction, placeholder session) and the sending side (router,
cloud client, outgoing log) meet only through these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Entity:
    """One detected identifier or quasi-identifier, with offsets into the ORIGINAL text."""

    type: str  # e.g. PERSON, LOCATION, DATE, AGE, PHONE, EMAIL, SSN, MRN, URL, IP_ADDRESS, ...
    start: int
    end: int
    text: str  # the original surface text: stays on the device, never serialized to the wire
    replacement: str = ""  # what stands in the sanitized text ("[PERSON_1]", "2019", "40-49")


@dataclass
class SanitizedPrompt:
    original: str
    sanitized: str
    entities: list[Entity] = field(default_factory=list)
    # Estimated probability that an identifier survived sanitizing (0 = none). The router refuses to
    # send when this is above its threshold.
    residual_risk: float = 0.0


class SanitizationError(Exception):
    """Sanitizing failed: the caller must send nothing (fail closed)."""


class PlaceholderSession(Protocol):
    """Conversation-scoped map between originals and typed, numbered placeholders."""

    def placeholder_for(self, entity_type: str, original: str) -> str: ...

    def restore(self, text: str) -> str:
        """Replace every placeholder in `text` by its original (exact inverse of substitution)."""
        ...


class Sanitizer(Protocol):
    def sanitize(self, text: str, session: PlaceholderSession | None = None) -> SanitizedPrompt:
        """Detect identifiers, abstract quasi-identifiers, substitute placeholders.

        Raises SanitizationError (never returns partially sanitized text) on failure.
        """
        ...
