"""Client-level privacy accounting (PLD / RDP through dp-accounting), calibration and the per-round record."""

from __future__ import annotations

import pytest
from dp_accounting import dp_event
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.rdp.rdp_privacy_accountant import RdpAccountant

from fedpriv.errors import ConfigError
from strategies.accounting import ClientLevelAccountant, calibrate_noise_multiplier, client_level_epsilon

PRIVACY_KEYS = {"epsilon", "delta", "noise_multiplier", "sample_rate", "rounds", "sampling"}


def _direct_pld_epsilon(sigma, q, rounds, delta):
    accountant = PLDAccountant()  # library defaults (discretization 1e-4)
    accountant.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), rounds)
    return accountant.get_epsilon(delta)


def test_epsilon_agrees_with_dp_accounting_and_grows_with_rounds():
    ours = client_level_epsilon(noise_multiplier=1.0, sample_rate=0.1, rounds=100, delta=1e-5)
    assert abs(ours - _direct_pld_epsilon(1.0, 0.1, 100, 1e-5)) < 0.05
    assert ours == pytest.approx(7.05, abs=0.1)  # REFERENCES.md: 10 of 100 clients, σ=1, 100 rounds → ≈7.1
    other = client_level_epsilon(noise_multiplier=2.0, sample_rate=0.3, rounds=10, delta=1e-5)
    assert abs(other - _direct_pld_epsilon(2.0, 0.3, 10, 1e-5)) < 0.05
    series = [client_level_epsilon(noise_multiplier=1.0, sample_rate=0.1, rounds=t, delta=1e-5) for t in (0, 1, 10, 50, 100)]
    assert series[0] == 0.0
    assert all(a < b for a, b in zip(series, series[1:]))
    # No amplification with every client every round.
    everyone = client_level_epsilon(noise_multiplier=1.0, sample_rate=1.0, rounds=10, delta=1e-5, sampling="all")
    assert everyone > client_level_epsilon(noise_multiplier=1.0, sample_rate=0.1, rounds=10, delta=1e-5)


def test_fixed_size_sampling_uses_rdp_replace_one_with_double_sensitivity():
    ours = client_level_epsilon(noise_multiplier=2.0, sample_rate=0.1, rounds=20, delta=1e-5, sampling="fixed",
                                population=100, sample_size=10)
    accountant = RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    accountant.compose(dp_event.SampledWithoutReplacementDpEvent(100, 10, dp_event.GaussianDpEvent(1.0)), 20)
    assert ours == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    record = ClientLevelAccountant(2.0, 0.1, 1e-5, sampling="fixed", population=100, sample_size=10).record()
    assert record["accountant"] == "rdp" and record["neighboring_relation"] == "replace_one"


def test_calibration_hits_target_epsilon():
    sigma = calibrate_noise_multiplier(target_epsilon=3.0, delta=1e-5, sample_rate=0.1, rounds=50)
    at = client_level_epsilon(noise_multiplier=sigma, sample_rate=0.1, rounds=50, delta=1e-5)
    assert at <= 3.0
    assert client_level_epsilon(noise_multiplier=sigma * 0.99, sample_rate=0.1, rounds=50, delta=1e-5) > 3.0
    assert abs(_direct_pld_epsilon(sigma, 0.1, 50, 1e-5) - at) < 0.05
    with pytest.raises(ConfigError, match="dp-target-epsilon"):
        calibrate_noise_multiplier(target_epsilon=-1.0, delta=1e-5, sample_rate=0.1, rounds=5)


def test_accountant_records_per_round():
    acc = ClientLevelAccountant(noise_multiplier=1.0, sample_rate=0.2, delta=1e-5, clipping_norm=0.5)
    assert acc.record()["epsilon"] == 0.0
    eps = [acc.step() for _ in range(3)]
    assert eps[0] < eps[1] < eps[2]
    record = acc.record()
    assert PRIVACY_KEYS <= set(record)
    assert record["rounds"] == 3 and record["sampling"] == "poisson" and record["accountant"] == "pld"
