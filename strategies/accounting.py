"""Client-level privacy accounting for DP-FedAvg (McMahan et al. 2018).

One round releases ``(Σ_i clip_S(u_i) + N(0, σ²S²)) / m``. The unit of privacy is a client: the
guarantee covers adding or removing all of one client's data.

Sampling modes and how they are accounted (be precise about which guarantee you report):

* ``poisson`` — every connected node is included independently with probability ``q``
  (implemented by :class:`strategies.client_dp.ClientLevelDP`). Accounted with Google
  dp-accounting's PLD accountant: ``PoissonSampledDpEvent(q, GaussianDpEvent(σ))`` composed over
  the rounds, ADD_OR_REMOVE_ONE adjacency, L2 sensitivity S. PLD is tight (pessimistic
  discretization, so an upper bound up to ~1e-5 at the default interval).
* ``all`` — every node every round (q = 1): no amplification, ``GaussianDpEvent(σ)`` composed.
* ``fixed`` — exactly ``m`` of ``N`` nodes without replacement (what Flower's own sampling
  does). dp-accounting's PLD accountant does *not* support ``SampledWithoutReplacementDpEvent``;
  its RDP accountant does, but only under REPLACE_ONE adjacency (N is public, one client's data
  is swapped for another's). Under replacement the sum's sensitivity is 2S, so the event uses
  σ/2. The result is an RDP upper bound for a different (replace-one) neighbouring relation —
  it is reported with ``accountant="rdp"`` and ``neighboring_relation="replace_one"`` and is not
  directly comparable to the add/remove ε of the other modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from logging import WARNING

from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.privacy_accountant import NeighboringRelation, PrivacyAccountant
from dp_accounting.rdp import rdp_privacy_accountant

from flwr.common import log

from fedpriv.errors import ConfigError

SAMPLING_MODES: tuple[str, ...] = ("poisson", "fixed", "all")
DEFAULT_DISCRETIZATION = 1e-3


def _check(sampling: str, noise_multiplier: float, sample_rate: float, delta: float) -> None:
    if sampling not in SAMPLING_MODES:
        raise ConfigError("dp-sampling", f"must be one of {', '.join(SAMPLING_MODES)}, got {sampling!r}")
    if not noise_multiplier >= 0:
        raise ConfigError("dp-noise-multiplier", f"must be non-negative, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise ConfigError("dp-sample-rate", f"must be in (0, 1], got {sample_rate}")
    if not 0 < delta < 1:
        raise ConfigError("dp-delta", f"must be in (0, 1), got {delta}")


def round_event(
    noise_multiplier: float,
    sample_rate: float,
    sampling: str = "poisson",
    population: int | None = None,
    sample_size: int | None = None,
) -> dp_event.DpEvent:
    """The DpEvent of one DP-FedAvg round (noise multiplier σ = noise std / S)."""
    if sampling == "all" or (sampling == "poisson" and sample_rate >= 1.0):
        return dp_event.GaussianDpEvent(noise_multiplier)
    if sampling == "poisson":
        return dp_event.PoissonSampledDpEvent(sample_rate, dp_event.GaussianDpEvent(noise_multiplier))
    if sampling == "fixed":
        if population is None or sample_size is None:
            raise ConfigError("dp-sampling", "fixed-size sampling needs the population and the sample size")
        # Replace-one adjacency: ||Σ with u - Σ with u'|| <= 2S, so the effective multiplier is σ/2.
        return dp_event.SampledWithoutReplacementDpEvent(
            int(population), int(sample_size), dp_event.GaussianDpEvent(noise_multiplier / 2.0)
        )
    raise ConfigError("dp-sampling", f"must be one of {', '.join(SAMPLING_MODES)}, got {sampling!r}")


def make_accountant(sampling: str, value_discretization_interval: float = DEFAULT_DISCRETIZATION) -> PrivacyAccountant:
    """PLD (add/remove) for poisson/all; RDP (replace-one) for fixed-size without replacement."""
    if sampling == "fixed":
        return rdp_privacy_accountant.RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    return pld_privacy_accountant.PLDAccountant(
        NeighboringRelation.ADD_OR_REMOVE_ONE, value_discretization_interval=value_discretization_interval
    )


def accountant_description(sampling: str) -> tuple[str, str]:
    """(accountant name, neighbouring relation) reported for a sampling mode."""
    return ("rdp", "replace_one") if sampling == "fixed" else ("pld", "add_or_remove_one")


def client_level_epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    rounds: int,
    delta: float,
    sampling: str = "poisson",
    population: int | None = None,
    sample_size: int | None = None,
    value_discretization_interval: float = DEFAULT_DISCRETIZATION,
) -> float:
    """ε after ``rounds`` DP-FedAvg rounds (0 rounds → 0; σ = 0 → inf)."""
    _check(sampling, noise_multiplier, sample_rate, delta)
    if rounds < 0:
        raise ConfigError("num-rounds", f"must be non-negative, got {rounds}")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    accountant = make_accountant(sampling, value_discretization_interval)
    try:
        accountant.compose(round_event(noise_multiplier, sample_rate, sampling, population, sample_size), int(rounds))
        return float(accountant.get_epsilon(delta))
    except (ValueError, OverflowError, MemoryError) as exc:
        # Tiny σ makes the PLD grid explode ("Maximum allowed size exceeded"): the guarantee is
        # vacuous anyway, so report the conservative answer rather than crash the run.
        if isinstance(exc, ValueError) and "size" not in str(exc).lower():
            raise
        log(WARNING, "client-level accounting failed for sigma=%g (%s); reporting epsilon=inf", noise_multiplier, exc)
        return math.inf


def calibrate_noise_multiplier(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    rounds: int,
    sampling: str = "poisson",
    population: int | None = None,
    sample_size: int | None = None,
    rel_tol: float = 1e-3,
    max_noise_multiplier: float = 1e3,
    value_discretization_interval: float = DEFAULT_DISCRETIZATION,
) -> float:
    """Smallest σ (to ``rel_tol``) whose ε after ``rounds`` rounds is <= ``target_epsilon``.

    Binary search on the monotone map σ → ε; the returned σ always satisfies the target.
    """
    if not (target_epsilon > 0 and math.isfinite(target_epsilon)):
        raise ConfigError("dp-target-epsilon", f"must be a positive finite number, got {target_epsilon}")
    if rounds <= 0:
        raise ConfigError("num-rounds", f"must be positive to calibrate noise, got {rounds}")

    def eps(sigma: float) -> float:
        return client_level_epsilon(
            noise_multiplier=sigma,
            sample_rate=sample_rate,
            rounds=rounds,
            delta=delta,
            sampling=sampling,
            population=population,
            sample_size=sample_size,
            value_discretization_interval=value_discretization_interval,
        )

    hi = 1.0
    while eps(hi) > target_epsilon:
        hi *= 2.0
        if hi > max_noise_multiplier:
            raise ConfigError(
                "dp-target-epsilon",
                f"epsilon={target_epsilon} is not reachable with noise multiplier <= {max_noise_multiplier} "
                f"(q={sample_rate}, rounds={rounds}, delta={delta})",
            )
    lo = hi / 2.0
    if eps(lo) <= target_epsilon:  # hi == 1 and the target is loose: search downwards
        lo = 0.0
        while True:
            probe = hi / 2.0
            if probe < 1e-3 or eps(probe) > target_epsilon:
                lo = probe
                break
            hi = probe
    while (hi - lo) > rel_tol * hi:
        mid = 0.5 * (lo + hi)
        if eps(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass
class ClientLevelAccountant:
    """Tracks the client-level ε of a DP-FedAvg run round by round."""

    noise_multiplier: float
    sample_rate: float
    delta: float
    sampling: str = "poisson"
    population: int | None = None
    sample_size: int | None = None
    clipping_norm: float | None = None
    expected_clients: float | None = None
    value_discretization_interval: float = DEFAULT_DISCRETIZATION
    rounds: int = 0
    _cache: dict[int, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        _check(self.sampling, self.noise_multiplier, self.sample_rate, self.delta)

    def epsilon(self, rounds: int | None = None) -> float:
        rounds = self.rounds if rounds is None else int(rounds)
        if rounds not in self._cache:
            self._cache[rounds] = client_level_epsilon(
                noise_multiplier=self.noise_multiplier,
                sample_rate=self.sample_rate,
                rounds=rounds,
                delta=self.delta,
                sampling=self.sampling,
                population=self.population,
                sample_size=self.sample_size,
                value_discretization_interval=self.value_discretization_interval,
            )
        return self._cache[rounds]

    def step(self, count: int = 1) -> float:
        """Account ``count`` more released rounds; return the new ε."""
        self.rounds += int(count)
        return self.epsilon()

    def would_exceed(self, max_epsilon: float, extra_rounds: int = 1) -> bool:
        return self.epsilon(self.rounds + extra_rounds) > max_epsilon

    def record(self, rounds: int | None = None) -> dict[str, object]:
        """The ``privacy.client_level`` record (ε after ``rounds``, default: rounds so far)."""
        rounds = self.rounds if rounds is None else int(rounds)
        accountant, relation = accountant_description(self.sampling)
        return {
            "epsilon": self.epsilon(rounds),
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "rounds": rounds,
            "sampling": self.sampling,
            "accountant": accountant,
            "neighboring_relation": relation,
            "clipping_norm": self.clipping_norm,
            "population": self.population,
            "expected_clients": self.expected_clients,
        }
