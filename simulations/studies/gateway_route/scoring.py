"""Correctness against the labels and agreement between two answers, defined plainly.

* correct: the answer contains one of the prompt's keywords, compared after `normalize`, as whole
  words (so "4" does not match "40", "Au" does not match "Australia");
* keyword agreement: both answers are correct (the local answer said what the stand-in said, as far
  as the labels can tell);
* exact agreement: the two answers are equal after `normalize`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_NON_WORD = re.compile(r"[^\w²₂^*.+-]+")


def normalize(text: str) -> str:
    """NFKC, lower case, punctuation except the characters formulas use turned into spaces, one space."""
    folded = unicodedata.normalize("NFKC", text).lower()
    folded = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", folded)  # full stops, not decimal points ("is 4." -> "is 4")
    return " ".join(_NON_WORD.sub(" ", folded).split())


def contains_keyword(answer: str | None, keywords: Iterable[str]) -> bool:
    if not answer:
        return False
    text = f" {normalize(answer)} "
    return any(f" {normalize(k)} " in text for k in keywords if normalize(k))


def exact_match(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and normalize(a) == normalize(b)


@dataclass(frozen=True)
class Row:
    """One prompt's outcome: the local answer and its confidence, the stand-in's answer through the
    gateway's cloud route (None when the gateway refused to send), and whether `auto` kept it local."""

    id: str
    category: str
    confidence: float
    local_answer: str
    cloud_answer: str | None
    cloud_route: str
    keywords: tuple[str, ...]

    @property
    def local_correct(self) -> bool:
        return contains_keyword(self.local_answer, self.keywords)

    @property
    def cloud_correct(self) -> bool:
        return contains_keyword(self.cloud_answer, self.keywords)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def summarize(rows: Sequence[Row], min_confidence: float) -> dict:
    """The figures at one threshold: a prompt stays local when its confidence >= min_confidence (the
    router's rule; no prompt of the set is too long for the local model)."""
    local = [r for r in rows if r.confidence >= min_confidence]
    sent = [r for r in rows if r.confidence < min_confidence]
    auto_correct = sum(r.local_correct for r in local) + sum(r.cloud_correct for r in sent)
    return {
        "min_confidence": min_confidence,
        "prompts": len(rows),
        "answered_locally": len(local),
        "local_share": _share(len(local), len(rows)),
        "local_correct": sum(r.local_correct for r in local),
        "standin_correct_on_local": sum(r.cloud_correct for r in local),
        "keyword_agreement": sum(r.local_correct and r.cloud_correct for r in local),
        "keyword_agreement_share": _share(sum(r.local_correct and r.cloud_correct for r in local), len(local)),
        "same_correctness": sum(r.local_correct == r.cloud_correct for r in local),
        "exact_agreement": sum(exact_match(r.local_answer, r.cloud_answer) for r in local),
        "sent": len(sent),
        "refused": sum(r.cloud_route == "refused" for r in sent),
        "auto_correct": auto_correct,
        "auto_accuracy": _share(auto_correct, len(rows)),
    }


def by_category(rows: Sequence[Row], min_confidence: float) -> dict[str, dict]:
    categories = dict.fromkeys(r.category for r in rows)
    return {c: summarize([r for r in rows if r.category == c], min_confidence) for c in categories}


def baselines(rows: Sequence[Row]) -> dict:
    """Every prompt answered by the local model alone, and by the stand-in alone (through the gateway)."""
    return {
        "local_only_correct": sum(r.local_correct for r in rows),
        "standin_only_correct": sum(r.cloud_correct for r in rows),
        "standin_refused": sum(r.cloud_route == "refused" for r in rows),
        "prompts": len(rows),
    }


def confidence_auroc(rows: Sequence[Row]) -> float | None:
    """How well the local confidence ranks the local model's right answers above its wrong ones: the
    chance that a random right answer has higher confidence than a random wrong one (ties count
    half; 0.5 = no better than chance, 1 = a threshold separates them perfectly)."""
    right = [r.confidence for r in rows if r.local_correct]
    wrong = [r.confidence for r in rows if not r.local_correct]
    if not right or not wrong:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in right for b in wrong)
    return round(wins / (len(right) * len(wrong)), 4)
