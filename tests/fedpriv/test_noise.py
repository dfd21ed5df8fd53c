"""fedpriv.noise: the secure source is Gaussian with the asked std, unpredictable; the seeded one repeats."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedpriv.noise import SecureNoise, SeededNoise, noise_source


@pytest.mark.parametrize("source", [SecureNoise(), SeededNoise(3)], ids=["secure", "seeded"])
def test_noise_is_gaussian_with_the_asked_std(source):
    draws = source.normal((200_000,), 2.5)
    assert draws.shape == (200_000,)
    assert abs(draws.mean()) < 0.03 and draws.std() == pytest.approx(2.5, rel=0.01)
    assert stats.kstest(draws / 2.5, "norm").pvalue > 1e-3


def test_secure_noise_never_repeats_and_seeded_noise_does():
    assert not np.array_equal(SecureNoise().normal((64,), 1.0), SecureNoise().normal((64,), 1.0))
    assert np.array_equal(SeededNoise(7).normal((64,), 1.0), SeededNoise(7).normal((64,), 1.0))


def test_secure_uniforms_fill_the_open_interval():
    u = SecureNoise(key=bytes(32)).uniform(100_000)
    assert 0.0 < u.min() and u.max() < 1.0 and stats.kstest(u, "uniform").pvalue > 1e-3


def test_each_source_says_what_it_is():
    assert SecureNoise().cryptographic and "ChaCha20" in SecureNoise().name
    seeded = noise_source("seeded", 5)
    assert not seeded.cryptographic and "seed 5" in seeded.name
    with pytest.raises(ValueError, match="noise source"):
        noise_source("urandom", 0)
