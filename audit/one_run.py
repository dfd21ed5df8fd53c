"""One-run privacy audit (Steinke, Nasr, Jagielski, NeurIPS 2023, arXiv 2305.08846).

m canaries are each included in training independently with probability ½. After one training
run every canary gets a score (higher = "looks included"); the auditor guesses "in" for the k₊
highest scores, "out" for the k₋ lowest, and abstains on the rest. Under (ε, δ)-DP the number of
correct guesses among r is stochastically dominated by Binomial(r, e^ε / (1 + e^ε)) (plus a δ
term), so a count that would be unlikely under that bound rejects ε: the largest rejected ε at
the given confidence is an empirical lower bound on the training's ε.

Written from the paper (Theorem 3.1 / Proposition 5.2) because no installed library implements it;
the p-value matches jax_privacy.auditing._one_run_p_value. The guess counts are fixed before the
scores are seen (`guess_fraction` of m on each side): choosing them after looking is a multiple
comparison, and with δ > 0 the bound's δ term (2mδ, 0.02 for m = 1,000 and δ = 1e-5) leaves no room
for a Bonferroni correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

DEFAULT_CONFIDENCE = 0.95
# Guesses on each side, as a share of m: with about half the canaries included, 0.2 guesses on the
# 40 % most confident (ceiling ≈ 4.7 for m = 1,000 when all are right) and abstains on the middle.
DEFAULT_GUESS_FRACTION = 0.2


def p_value(m: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """P[≥ `correct` right among `guesses`] under an (ε, δ)-DP training with m canaries."""
    if guesses == 0 or correct == 0:
        return 1.0
    q = float(special.expit(epsilon))
    beta = float(stats.binom.sf(correct - 1, guesses, q))
    if delta == 0:
        return beta
    i = np.arange(1, correct + 1)
    tail = stats.binom.sf(correct - i - 1, guesses, q) - beta
    alpha = float(np.max(tail / i, initial=0.0))
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_bound(m: int, guesses: int, correct: int, delta: float, significance: float) -> float:
    """The largest ε that `correct` right guesses out of `guesses` reject at `significance` (0 if none)."""
    if p_value(m, guesses, correct, 0.0, 0.0) > significance:
        return 0.0

    def rejects(epsilon: float) -> float:  # > 0 while the (ε, δ) claim is rejected
        return significance - p_value(m, guesses, correct, epsilon, delta)

    if rejects(0.0) <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while rejects(high) > 0:
        low, high = high, 2 * high
        if high > 1e3:  # every guess right with huge m: report the search limit
            return high
    return float(optimize.brentq(rejects, low, high, xtol=1e-6))


def ceiling(m: int, delta: float = 0.0, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The most any one-run audit can show with m canaries: all m guessed, every guess right."""
    return epsilon_bound(m, m, m, delta, 1.0 - confidence)


@dataclass(frozen=True)
class OneRunResult:
    epsilon_lower_bound: float
    ceiling: float  # the bound if every one of these guesses were right (the audit's limit for this m)
    canaries: int
    included: int
    guesses_in: int  # k₊: the highest scores, guessed "in"
    guesses_out: int  # k₋: the lowest scores, guessed "out"
    correct: int
    confidence: float
    delta: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def one_run_audit(scores: Sequence[float], included: Sequence[bool], delta: float = 0.0,
                  confidence: float = DEFAULT_CONFIDENCE, guess_fraction: float = DEFAULT_GUESS_FRACTION) -> OneRunResult:
    """Lower-bound ε from canary scores (higher = more likely trained on) and their true membership."""
    scores_arr = np.asarray(scores, dtype=np.float64)
    member = np.asarray(included, dtype=bool)
    m = len(scores_arr)
    if m == 0 or len(member) != m:
        raise ValueError(f"need one membership flag per canary score, got {m} scores and {len(member)} flags")
    if not np.all(np.isfinite(scores_arr)):
        raise ValueError("canary scores must be finite")
    if not 0 < guess_fraction <= 0.5:
        raise ValueError(f"guess_fraction must be in (0, 0.5], got {guess_fraction}")
    k = max(1, int(round(guess_fraction * m)))
    order = np.argsort(-scores_arr, kind="stable")  # most "in"-looking first
    ranked = member[order]
    right = int(ranked[:k].sum()) + int((~ranked[m - k:]).sum())
    significance = 1.0 - confidence
    return OneRunResult(epsilon_bound(m, 2 * k, right, delta, significance), epsilon_bound(m, 2 * k, 2 * k, delta, significance),
                        m, int(member.sum()), k, k, right, confidence, delta)


def gaussian_mechanism_scores(m: int, epsilon: float, delta: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Known-answer scores: canary i adds a unit shift to a Gaussian with σ calibrated so that the
    mechanism is exactly (ε, δ)-DP; returns (scores, membership). Used to test the bound's soundness."""
    sigma = gaussian_sigma(epsilon, delta)
    rng = np.random.default_rng(seed)
    member = rng.random(m) < 0.5
    scores = member.astype(np.float64) + rng.normal(0.0, sigma, m)
    return scores, member


def gaussian_sigma(epsilon: float, delta: float) -> float:
    """σ of the Gaussian mechanism (sensitivity 1) that is exactly (ε, δ)-DP (Balle & Wang 2018)."""
    def delta_at(sigma: float) -> float:
        a = 1.0 / (2 * sigma) - epsilon * sigma
        b = -1.0 / (2 * sigma) - epsilon * sigma
        return float(stats.norm.cdf(a) - math.exp(epsilon) * stats.norm.cdf(b)) - delta

    return float(optimize.brentq(delta_at, 1e-3, 1e3))
