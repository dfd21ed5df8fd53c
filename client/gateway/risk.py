"""Residual risk: the probability that a sanitized prompt still holds a direct identifier.

A logistic model over what is left in the sanitized text -- signs of a missed identifier:
capitalized words that are neither English words nor known non-identifying names, words outside
the English lexicon, numbers standing next to a placeholder (a house number or postcode left
behind), bare 3-6 digit numbers, address-block lines, an all-lower-case or all-capitals prompt,
identifier keywords with no placeholder after them, an "@", letter+digit codes, words in a
non-Latin script -- and how many identifiers were found (a prompt dense with identifiers is
likelier to hide one more).

The weights are fitted on the development part of the evaluation set
(``python -m simulations.studies.sanitizer_eval calibrate``, which writes
``assets/risk_model.json``), so the score is a calibrated probability there: prompts above the
router's threshold are refused, and the evaluation reports the leak rate among sent and refused
prompts (docs/sanitizer.md).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from client.gateway.recognizers.common import NON_PII_CAPITALIZED, is_common_word

MODEL_PATH = Path(__file__).resolve().parent / "assets" / "risk_model.json"
FEATURES = (
    "n_direct", "unknown_caps", "unknown_lower", "digits_by_placeholder", "bare_numbers", "address_lines",
    "caseless", "keywords", "at_signs", "codes", "non_latin",
)
PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*?_\d+\]")
_AGE_BAND = re.compile(r"\b\d{1,3}-\d{1,3}\b|\b90 or older\b|\b90\+")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_NEAR_PLACEHOLDER = re.compile(r"\][ \t]*,?[ \t]*\d{1,6}\b|\b\d{1,6}[ \t]*,?[ \t]*\[")
_BARE_NUMBER = re.compile(r"(?<![\w.,/-])\d{3,6}(?![\w.,/-])")
_CODE = re.compile(r"\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{5,}\b")
_ADDRESS_PLACEHOLDER = re.compile(r"\[(?:ADDRESS|ZIP|LOCATION)_\d+\]")
KEYWORD_RISK = re.compile(
    r"\b(?:ssn|social security|mrn|medical record|dob|date of birth|account (?:number|no|#)|acct|member id|policy (?:number|no|#)|licen[cs]e (?:number|no|#)|passport|serial (?:number|no|#)|phone number|fax|e-?mail address|zip code|postcode|address)\b(?![^\n.]{0,24}(?:\[[A-Z_]+_\d+\]|(?:19|20)\d\d))",
    re.IGNORECASE,
)


def features(sanitized: str, n_direct: int, caseless: bool) -> dict[str, float]:
    masked = PLACEHOLDER.sub(" ", sanitized)
    masked = _AGE_BAND.sub(" ", masked)
    unknown_caps = unknown_lower = non_latin = 0
    sentence_start = True
    for m in re.finditer(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|[.!?\n:]", masked):
        word = m.group()
        if not word[0].isalpha():
            sentence_start = True
            continue
        low = word.lower()
        if any(ord(c) > 0x24F for c in word):
            non_latin += 1
        elif len(low) >= 3 and not is_common_word(low) and low not in NON_PII_CAPITALIZED:
            if word[0].isupper() and not sentence_start:
                unknown_caps += 1
            elif word.islower():
                unknown_lower += 1
        sentence_start = False
    bare = sum(1 for m in _BARE_NUMBER.finditer(masked) if not (len(m.group()) == 4 and 1900 <= int(m.group()) <= 2099))
    lines = sum(1 for line in sanitized.split("\n") if _ADDRESS_PLACEHOLDER.search(line)) if "\n" in sanitized else 0
    raw = {
        "n_direct": n_direct,
        "unknown_caps": unknown_caps,
        "unknown_lower": unknown_lower,
        "digits_by_placeholder": len(_NEAR_PLACEHOLDER.findall(sanitized)),
        "bare_numbers": bare,
        "address_lines": lines,
        "caseless": 1.0 if caseless else 0.0,
        "keywords": len(KEYWORD_RISK.findall(sanitized)),
        "at_signs": masked.count("@"),
        "codes": len(_CODE.findall(masked)),
        "non_latin": non_latin,
    }
    return {k: (v if k == "caseless" else math.log1p(v)) for k, v in raw.items()}


@dataclass(frozen=True)
class RiskModel:
    weights: dict[str, float]
    bias: float

    def probability(self, x: dict[str, float]) -> float:
        z = self.bias + sum(self.weights.get(k, 0.0) * v for k, v in x.items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_json(self, meta: dict | None = None) -> str:
        return json.dumps({"features": list(FEATURES), "weights": self.weights, "bias": self.bias, **(meta or {})}, indent=2) + "\n"


@lru_cache(maxsize=1)
def shipped_model() -> RiskModel:
    data = json.loads(MODEL_PATH.read_text(encoding="utf-8"))
    return RiskModel({k: float(v) for k, v in data["weights"].items()}, float(data["bias"]))


def residual_risk(sanitized: str, direct_types: Iterable[str], caseless: bool, model: RiskModel | None = None) -> float:
    x = features(sanitized, sum(1 for _ in direct_types), caseless)
    return round((model or shipped_model()).probability(x), 4)
