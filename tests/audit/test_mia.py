"""audit.mia and audit.exposure: the attack statistics on inputs whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from audit.exposure import exposure
from audit.mia import lira_offline, loss_attack, roc, tpr_at_fpr


def test_roc_of_separated_and_of_identical_distributions():
    perfect = roc([5.0, 6.0, 7.0], [1.0, 2.0, 3.0])
    assert perfect.auc == pytest.approx(1.0) and perfect.tpr_at[0.001] == 1.0
    rng = np.random.default_rng(0)
    chance = roc(rng.normal(size=4000), rng.normal(size=4000))
    assert chance.auc == pytest.approx(0.5, abs=0.03) and chance.tpr_at[0.01] < 0.03


def test_tpr_at_fpr_never_interpolates_above_what_a_threshold_achieves():
    fpr = np.array([0.0, 0.5, 1.0])
    tpr = np.array([0.0, 0.9, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.01) == 0.0 and tpr_at_fpr(fpr, tpr, 0.5) == 0.9


def test_lira_beats_the_loss_attack_when_records_differ_in_difficulty():
    # Each record has its own difficulty; training lowers a member's loss by 0.5 nats.
    rng = np.random.default_rng(1)
    n = 2000
    difficulty = rng.normal(3.0, 1.0, n)
    member = rng.random(n) < 0.5
    target = difficulty - 0.5 * member + rng.normal(0, 0.1, n)
    reference = difficulty[None, :] + rng.normal(0, 0.1, (4, n))
    lira, loss = lira_offline(target, reference), loss_attack(target)
    assert roc(lira[member], lira[~member]).tpr_at[0.01] > 0.5 > roc(loss[member], loss[~member]).tpr_at[0.01]


def test_exposure_of_a_memorized_and_of_an_ordinary_canary():
    rng = np.random.default_rng(2)
    candidates = rng.normal(4.0, 0.3, 5000)
    memorized = exposure(1.0, candidates, 1e8)
    ordinary = exposure(4.0, candidates, 1e8)
    assert memorized.empirical == pytest.approx(np.log2(5001))  # better than every candidate: the sample's cap
    assert memorized.extrapolated > memorized.empirical  # the fit reaches beyond the sample
    assert ordinary.empirical == pytest.approx(1.0, abs=0.1)  # the median of its format: about one bit
    assert memorized.extrapolated <= memorized.space_bits
