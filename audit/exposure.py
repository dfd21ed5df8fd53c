"""Canary exposure (Carlini et al., "The Secret Sharer", USENIX Security 2019).

A secret-format canary (an MRN, a phone number) is inserted into training; afterwards its
log-perplexity under the model is ranked among all candidates of the same format:
exposure = log₂|R| − log₂ rank. |R| is far too large to enumerate (10⁸ MRNs), so the rank is
estimated from a uniform sample of candidates: exposure ≈ −log₂ P̂[candidate scores at least as
well as the canary]. The empirical estimate is capped by the sample size; the paper's
extrapolation fits the candidates' log-perplexities with a normal distribution and reads the
canary's tail probability from it, which reaches beyond the sample (reported alongside).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Exposure:
    empirical: float  # −log₂((better + 1) / (n + 1)), at most log₂(n + 1)
    extrapolated: float  # −log₂ of the normal tail below the canary's log-perplexity
    max_empirical: float  # log₂(n + 1): the cap of the empirical estimate
    space_bits: float  # log₂|R|: the most any canary of this format can be exposed
    candidates: int

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def exposure(canary_nll: float, candidate_nlls: Sequence[float], space_size: float) -> Exposure:
    """Exposure of a canary from its NLL and the NLLs of uniformly sampled candidates of its format."""
    candidates = np.asarray(candidate_nlls, dtype=np.float64)
    n = candidates.size
    if n == 0:
        raise ValueError("need at least one candidate")
    better = int(np.sum(candidates <= canary_nll))
    empirical = -math.log2((better + 1) / (n + 1))
    mean, std = float(candidates.mean()), float(candidates.std(ddof=1)) if n > 1 else 0.0
    space_bits = math.log2(space_size)
    if std > 0:
        log_tail = stats.norm.logcdf((canary_nll - mean) / std)  # natural log of P[candidate ≤ canary]
        extrapolated = min(-log_tail / math.log(2), space_bits)
    else:
        extrapolated = empirical
    return Exposure(empirical, float(extrapolated), math.log2(n + 1), space_bits, n)
