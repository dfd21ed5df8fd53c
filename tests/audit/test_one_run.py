"""audit.one_run: the one-run bound is sound on a mechanism whose ε is known, and has power."""

from __future__ import annotations

import numpy as np
import pytest

from audit.one_run import ceiling, epsilon_bound, gaussian_mechanism_scores, gaussian_sigma, one_run_audit, p_value


@pytest.mark.parametrize("epsilon", [1.0, 4.0, 8.0])
def test_bound_on_the_gaussian_mechanism_is_positive_and_at_most_its_true_epsilon(epsilon):
    bounds = []
    for seed in range(5):
        scores, member = gaussian_mechanism_scores(1000, epsilon, 1e-5, seed)
        bounds.append(one_run_audit(scores, member, delta=1e-5).epsilon_lower_bound)
    assert max(bounds) <= epsilon  # sound: never above the truth
    assert np.mean(bounds) > 0  # and it has power


def test_gaussian_sigma_gives_the_stated_epsilon():
    # Balle & Wang: sigma for (1, 1e-5)-DP at sensitivity 1 is about 3.73 (tighter than the classic 4.84).
    assert gaussian_sigma(1.0, 1e-5) == pytest.approx(3.73, abs=0.02)
    assert gaussian_sigma(8.0, 1e-5) < gaussian_sigma(1.0, 1e-5)


def test_ceiling_matches_the_papers_structural_limit():
    assert ceiling(100) == pytest.approx(3.5, abs=0.1)
    assert ceiling(1000) == pytest.approx(5.8, abs=0.1)


def test_perfectly_separated_canaries_reach_the_ceiling_of_the_guesses_made():
    rng = np.random.default_rng(0)
    member = rng.random(1000) < 0.5
    scores = member * 100.0 + rng.normal(0, 1, 1000)
    result = one_run_audit(scores, member, delta=1e-5)
    assert result.correct == result.guesses_in + result.guesses_out
    assert result.epsilon_lower_bound == pytest.approx(result.ceiling) and result.epsilon_lower_bound > 3


def test_scores_unrelated_to_membership_prove_nothing():
    rng = np.random.default_rng(1)
    member = rng.random(1000) < 0.5
    assert one_run_audit(rng.normal(size=1000), member, delta=1e-5).epsilon_lower_bound < 0.5


def test_p_value_falls_with_more_correct_guesses_and_rises_with_epsilon():
    assert p_value(1000, 100, 90, 1.0, 0.0) < p_value(1000, 100, 70, 1.0, 0.0)
    assert p_value(1000, 100, 90, 2.0, 0.0) > p_value(1000, 100, 90, 1.0, 0.0)
    assert epsilon_bound(1000, 100, 50, 0.0, 0.05) == 0.0  # chance level rejects nothing


def test_rejects_malformed_input():
    with pytest.raises(ValueError, match="membership"):
        one_run_audit([1.0, 2.0], [True])
    with pytest.raises(ValueError, match="finite"):
        one_run_audit([1.0, float("nan")], [True, False])
