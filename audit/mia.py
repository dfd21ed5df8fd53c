"""Membership inference: how well can an attacker tell training records from held-out ones?

Two attacks on per-record losses (mean token NLL, lower = better fit):
* **loss attack** (Yeom et al. 2018): score = −loss under the target model.
* **LiRA, offline variant** (Carlini et al., S&P 2022): K reference models trained without the
  target records (on other records of the same distribution) give each record a reference loss
  distribution N(μ_x, σ_x²); score = (μ_x − loss_target(x)) / σ_x, how far below its reference
  loss the target model puts the record. With few reference models σ_x is noisy, so (as the
  paper's fixed-variance variant) the per-record spread is pooled across records.
Reported: the ROC curve, AUC, and TPR at FPR 0.1% and 1% (the low-FPR regime is what matters:
an attack that is confident on a few records breaks their privacy even at a low average AUC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LOW_FPRS = (0.001, 0.01)


def loss_attack(target_losses: Sequence[float]) -> np.ndarray:
    return -np.asarray(target_losses, dtype=np.float64)


def lira_offline(target_losses: Sequence[float], reference_losses: np.ndarray) -> np.ndarray:
    """Scores from the target model's losses [n] and the reference models' losses [K, n]."""
    target = np.asarray(target_losses, dtype=np.float64)
    reference = np.atleast_2d(np.asarray(reference_losses, dtype=np.float64))
    if reference.shape[1] != target.shape[0]:
        raise ValueError(f"reference losses cover {reference.shape[1]} records, the target {target.shape[0]}")
    mean = reference.mean(axis=0)
    if reference.shape[0] >= 2:
        spread = float(np.sqrt(np.mean(reference.var(axis=0, ddof=1))))  # pooled across records
    else:
        spread = float(np.std(mean - target)) or 1.0  # one reference model: no per-record spread to estimate
    return (mean - target) / max(spread, 1e-12)


@dataclass(frozen=True)
class RocResult:
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    tpr_at: dict[float, float]  # FPR -> TPR
    members: int
    non_members: int

    def to_dict(self) -> dict:
        return {"auc": self.auc, "tpr_at_fpr": {f"{k:g}": v for k, v in self.tpr_at.items()},
                "members": self.members, "non_members": self.non_members}


def roc(member_scores: Sequence[float], non_member_scores: Sequence[float], fprs: Sequence[float] = LOW_FPRS) -> RocResult:
    """ROC of the rule "member if score ≥ t" over all thresholds t."""
    pos = np.asarray(member_scores, dtype=np.float64)
    neg = np.asarray(non_member_scores, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("need at least one member and one non-member score")
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    tp = pos.size - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg_sorted, thresholds, side="left")
    tpr = np.concatenate([[0.0], tp / pos.size])
    fpr = np.concatenate([[0.0], fp / neg.size])
    auc = float(np.trapezoid(tpr, fpr))
    return RocResult(fpr, tpr, auc, {f: tpr_at_fpr(fpr, tpr, f) for f in fprs}, int(pos.size), int(neg.size))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The highest TPR among thresholds whose FPR is at most `target` (no interpolation: an honest floor)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0
