"""Per-prompt routing: answer on the device, send the sanitized prompt to the cloud, or refuse.

Policies:

* ``local`` -- always the local model; nothing ever leaves the device.
* ``cloud`` -- always the cloud, with the sanitized prompt, if sanitizing succeeded and the
  residual risk is at most the threshold; otherwise refused.
* ``auto``  -- the local model answers first; if it is confident enough (geometric-mean token
  probability of its greedy answer >= ``min_confidence``) its answer is used and nothing is sent.
  Otherwise as ``cloud``.

Fail closed: whenever the decision is not clearly "safe to send", the route is ``refused`` with a
reason, and nothing is sent. Every decision carries a human-readable reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from client.gateway.local_model import LocalAnswer
from client.gateway.types import SanitizedPrompt
from fedpriv.errors import FedprivError

# Same default as the sanitizer's (client.gateway.sanitizer.DEFAULT_RISK_THRESHOLD): its risk
# model charges every direct identifier found a 0.5 % miss rate, so 0.2 still lets a prompt with a
# few dozen identifiers through, while any suspicious leftover (an '@', an unclaimed code ...)
# pushes it over.
DEFAULT_MAX_RESIDUAL_RISK = 0.2
DEFAULT_MIN_CONFIDENCE = 0.5

# Entity types whose original text must never appear in what is sent, whatever the sanitizer
# decided (quasi-identifiers such as DATE/AGE/LOCATION may legitimately be abstracted to a value that
# equals a substring of the original, e.g. a year).
DIRECT_IDENTIFIER_TYPES = frozenset(
    {
        "PERSON", "NAME", "PHONE", "PHONE_NUMBER", "EMAIL", "EMAIL_ADDRESS", "SSN", "US_SSN", "MRN",
        "MEDICAL_RECORD_NUMBER", "CREDIT_CARD", "IBAN", "IBAN_CODE", "IP_ADDRESS", "URL", "ACCOUNT",
        "ACCOUNT_NUMBER", "ID", "ID_NUMBER", "PASSPORT", "US_PASSPORT", "DRIVER_LICENSE", "US_DRIVER_LICENSE",
        "LICENSE_PLATE", "ADDRESS", "STREET_ADDRESS", "ZIP", "ZIP_CODE", "INSURANCE_ID", "DEVICE_ID",
    }
)
_MIN_LEAK_DIGITS = 5


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class Route(str, Enum):
    LOCAL = "local"
    CLOUD = "cloud"
    REFUSED = "refused"


class Policy(str, Enum):
    LOCAL = "local"
    CLOUD = "cloud"
    AUTO = "auto"


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    reason: str

    @property
    def sends(self) -> bool:
        return self.route is Route.CLOUD


def parse_policy(value: str | Policy) -> Policy:
    try:
        return Policy(value)
    except ValueError:
        raise FedprivError(f"unknown route {value!r}: choose local, cloud or auto") from None


def leaked_entity_types(sanitized: SanitizedPrompt) -> list[str]:
    """Types of detected direct identifiers whose original text (or, for numbers, digit string)
    still appears in the sanitized text. A safety net behind the sanitizer."""
    outgoing = sanitized.sanitized
    outgoing_lower = outgoing.lower()
    outgoing_digits = re.sub(r"\D", "", outgoing)
    leaked: list[str] = []
    for entity in sanitized.entities:
        original = (entity.text or "").strip()
        if not original or original == (entity.replacement or "").strip():
            continue
        kind = entity.type.upper()
        direct = kind in DIRECT_IDENTIFIER_TYPES
        if direct and original.lower() in outgoing_lower:
            leaked.append(kind)
            continue
        digits = re.sub(r"\D", "", original)
        if len(digits) >= _MIN_LEAK_DIGITS and digits in outgoing_digits:
            # a phone number re-spaced, an SSN without dashes ... (digit runs of quasi-identifiers
            # such as full dates count too; a year alone has < 5 digits)
            leaked.append(kind)
    return sorted(set(leaked))


class Router:
    def __init__(
        self,
        policy: str | Policy = Policy.AUTO,
        *,
        max_residual_risk: float = DEFAULT_MAX_RESIDUAL_RISK,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> None:
        self.policy = parse_policy(policy)
        if not 0.0 <= max_residual_risk <= 1.0:
            raise FedprivError(f"max residual risk must be in [0, 1], got {max_residual_risk}")
        if not 0.0 <= min_confidence <= 1.0:
            raise FedprivError(f"min confidence must be in [0, 1], got {min_confidence}")
        self.max_residual_risk = max_residual_risk
        self.min_confidence = min_confidence

    @property
    def uses_local_first(self) -> bool:
        return self.policy in (Policy.LOCAL, Policy.AUTO)

    def after_local(self, answer: LocalAnswer) -> RouteDecision | None:
        """Decision once the local model has answered; None = go on to the cloud path."""
        if self.policy is Policy.LOCAL:
            return RouteDecision(Route.LOCAL, "route=local: answered on the device, nothing sent")
        if self.policy is Policy.CLOUD:
            return None
        if answer.too_long:
            return None
        if answer.confidence >= self.min_confidence:
            return RouteDecision(
                Route.LOCAL,
                f"local model confident ({answer.confidence:.2f} >= {self.min_confidence:.2f} geometric-mean token "
                f"probability, mean entropy {answer.mean_entropy:.2f} nats): answered on the device, nothing sent",
            )
        return None

    def local_shortfall(self, answer: LocalAnswer | None) -> str:
        """Why the local answer was not used (the first half of a cloud/refused reason)."""
        if self.policy is Policy.CLOUD:
            return "route=cloud"
        if answer is None:
            return "no local answer"
        if answer.too_long:
            return "prompt too long for the local model"
        return f"local model not confident ({answer.confidence:.2f} < {self.min_confidence:.2f})"

    def after_sanitize(self, sanitized: SanitizedPrompt, *, local: LocalAnswer | None = None) -> RouteDecision:
        why = self.local_shortfall(local)
        risk = sanitized.residual_risk
        if not isinstance(risk, (int, float)) or risk != risk or risk < 0:  # NaN / nonsense: fail closed
            return RouteDecision(Route.REFUSED, f"{why}; sanitizer reported an invalid residual risk ({risk!r}): nothing sent")
        if risk > self.max_residual_risk:
            return RouteDecision(
                Route.REFUSED,
                f"{why}; residual re-identification risk after sanitizing {risk:.2f} is above the threshold "
                f"{self.max_residual_risk:.2f}: nothing sent",
            )
        if not sanitized.sanitized.strip():
            return RouteDecision(Route.REFUSED, f"{why}; nothing is left of the prompt after sanitizing: nothing sent")
        leaked = leaked_entity_types(sanitized)
        if leaked:
            return RouteDecision(
                Route.REFUSED,
                f"{why}; the sanitized prompt still contains detected identifiers ({', '.join(leaked)}): nothing sent",
            )
        return RouteDecision(
            Route.CLOUD,
            f"{why}; sent the sanitized prompt to the cloud ({_count(len(sanitized.entities), 'identifier')} replaced, "
            f"residual risk {risk:.2f} <= {self.max_residual_risk:.2f})",
        )

    def sanitize_failed(self, error: BaseException, *, local: LocalAnswer | None = None) -> RouteDecision:
        why = self.local_shortfall(local)
        detail = str(error).strip() or type(error).__name__
        return RouteDecision(Route.REFUSED, f"{why}; sanitizing failed ({detail}): nothing sent")
