"""Client-level DP (DP-FedAvg, McMahan et al. 2018) as a wrapper around any LoraStrategy.

Each round, for the sampled clients:

1. validate every reply with the wrapped strategy (non-finite, wrong keys/shapes, stale, ... are
   rejected here — *before* clipping, because ``min(1, S / nan) = 1`` would let NaN through);
2. u_i = reply − sent in the strategy's update space (ffa: B only; fedsa: A only; hetlora
   zero_pad: padded to the global rank), clipped to L2 norm S (after the strategy's own
   ``norm_bound``, if any);
3. sum, add N(0, σ²S²) to every coordinate of the sum, divide by the *expected* number of
   clients m (q·N for Poisson sampling) — uniform weights, num-examples is not used;
4. global ← global + that mean, through the strategy (ffa keeps A₀ fixed).

The noisy aggregate is released every configured round, even when no client (or no valid reply)
is in the sample, so the released output is always the Gaussian mechanism that is accounted. For
the same reason the wrapped strategy's ``min_train_replies`` does not hold a release back: whether
enough clients replied depends on who was sampled, which is what client-level DP protects, so
keeping the previous adapter instead would be an unaccounted release. The shortfall is recorded
in the round's report.

Sampling draws from the connected nodes in the wrapped strategy's ``order_nodes`` (client-id)
order, and a round waits only for ``min_available_nodes`` of them, not for the whole population:
a node that is offline is simply not sampled, which can only lower its inclusion probability.

Sampling (``sampling``): ``poisson`` (default) — this wrapper's ``configure_train`` includes
every connected node independently with probability q (so the number of clients per round varies)
and accounts ``PoissonSampledDpEvent(q, GaussianDpEvent(σ))`` with PLD; ``all`` — every node
every round (q = 1); ``fixed`` — exactly m of N without replacement, accounted with RDP under
replace-one adjacency (see ``accounting.py``).

Trust model. Plaintext: the server sees individual updates (central DP with a trusted
aggregator) and clips them here. Under secure aggregation (the wrapped strategy's
``secure_aggregation``, the phone default) the server never sees one: the round loop calls
``train_secure``, every device clips its own update to S (the bound travels in the round's setup,
see ``strategies/secure_round.py``) and masks it with weight 1, and the server adds the same
N(0, σ²S²) to the unmasked sum, divides by m and steps the global adapter; the accountant is the
same. A secure round that aborts (too few survivors for the threshold) releases the noise alone
over the previous global adapter, so a release still happens every configured round; what that
means for the guarantee is in docs/privacy.md ("Client-level DP under secure aggregation").
Noise and sampling use numpy's PCG64 generator (not a CSPRNG; floating-point Gaussian sampling is
also not hardened against Mironov-style attacks): fine for research runs, not for production.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from logging import INFO, WARNING
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedpriv.errors import ConfigError
from fedpriv.noise import NOISE_SOURCES, SECURE, SEEDED, SecureNoise, SeededNoise
from strategies.accounting import (
    DEFAULT_DISCRETIZATION,
    SAMPLING_MODES,
    ClientLevelAccountant,
    calibrate_noise_multiplier,
)
from strategies.base import LoraStrategy, wait_for_nodes
from strategies.secure_round import Send
from strategies.robust import clip_update


class ClientLevelDP(Strategy):
    """Client-level DP-FedAvg around a :class:`LoraStrategy`.

    Parameters
    ----------
    strategy : LoraStrategy
        The wrapped strategy (fedavg, ffa, fedsa, hetlora with method=zero_pad, pad_target=update).
    clipping_norm : float
        S: every client update is clipped to this L2 norm.
    noise_multiplier : float | None
        σ: noise std on the sum is σ·S. ``None``: calibrated from ``target_epsilon`` over
        ``num_rounds`` rounds (binary search with the same accountant).
    target_epsilon, num_rounds : float | None, int | None
        Used for calibration (and for the projected ε in the records).
    delta : float
        δ of the reported (ε, δ).
    sampling : "poisson" | "all" | "fixed"
    sample_rate : float | None
        q. Poisson: inclusion probability. Default: ``clients_per_round / population``.
    clients_per_round : int | None
        Expected (poisson) or exact (fixed) clients per round, if ``sample_rate`` is not given.
    population : int | None
        N, the number of clients. Default: the nodes connected at the first round.
    max_epsilon : float | None
        Stop training (send no more train instructions) once the next round would exceed it.
    seed : int | None
        Seed of the sampling and noise generator (None: fresh OS entropy).
    noise_source : "seeded" | "secure"
        ``seeded``: sampling and noise from numpy's PCG64 at ``seed`` (reproducible simulations);
        ``secure``: from a ChaCha20 CSPRNG keyed from the OS (`fedpriv.noise.SecureNoise`), for
        deployments. Recorded in the privacy record.
    """

    # pylint: disable=too-many-arguments,too-many-instance-attributes
    def __init__(
        self,
        strategy: LoraStrategy,
        *,
        clipping_norm: float,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        num_rounds: int | None = None,
        delta: float = 1e-5,
        sampling: str = "poisson",
        sample_rate: float | None = None,
        clients_per_round: int | None = None,
        population: int | None = None,
        max_epsilon: float | None = None,
        seed: int | None = None,
        value_discretization_interval: float = DEFAULT_DISCRETIZATION,
        noise_source: str = SEEDED,
    ) -> None:
        super().__init__()
        if not isinstance(strategy, LoraStrategy):
            raise ConfigError("client-dp", "the client-level DP wrapper needs a fedpriv LoraStrategy")
        if strategy.trim_beta is not None:
            raise ConfigError("trim-beta", "trimmed mean has no bounded per-client sensitivity; not supported with client-dp")
        if getattr(strategy, "method", "zero_pad") != "zero_pad" or getattr(strategy, "pad_target", "update") != "update":
            raise ConfigError(
                "hetlora-method",
                "client-dp supports hetlora only with method=zero_pad and pad-target=update (the aggregate must be a "
                "sum of clipped updates)",
            )
        if not (isinstance(clipping_norm, int | float) and clipping_norm > 0 and np.isfinite(clipping_norm)):
            raise ConfigError("dp-clipping-norm", f"must be a positive finite number, got {clipping_norm!r}")
        if sampling not in SAMPLING_MODES:
            raise ConfigError("dp-sampling", f"must be one of {', '.join(SAMPLING_MODES)}, got {sampling!r}")
        if noise_multiplier is None and target_epsilon is None:
            raise ConfigError("dp-noise-multiplier", "set dp-noise-multiplier or dp-target-epsilon (with num-rounds)")
        if noise_multiplier is not None and target_epsilon is not None:
            raise ConfigError("dp-target-epsilon", "set either dp-noise-multiplier or dp-target-epsilon, not both")
        if noise_multiplier is not None and not noise_multiplier > 0:
            raise ConfigError("dp-noise-multiplier", f"must be positive, got {noise_multiplier}")
        if target_epsilon is not None and not num_rounds:
            raise ConfigError("num-rounds", "calibrating the noise to dp-target-epsilon needs the number of rounds")
        if sample_rate is not None and not 0 < sample_rate <= 1:
            raise ConfigError("dp-sample-rate", f"must be in (0, 1], got {sample_rate}")
        if sampling != "all" and sample_rate is None and clients_per_round is None:
            raise ConfigError("dp-sample-rate", f"sampling={sampling} needs dp-sample-rate or dp-clients-per-round")
        if clients_per_round is not None and clients_per_round <= 0:
            raise ConfigError("dp-clients-per-round", f"must be positive, got {clients_per_round}")
        if population is not None and population <= 0:
            raise ConfigError("dp-population", f"must be positive, got {population}")
        if not 0 < delta < 1:
            raise ConfigError("dp-delta", f"must be in (0, 1), got {delta}")
        self.strategy = strategy
        self.clipping_norm = float(clipping_norm)
        self.noise_multiplier = noise_multiplier
        self.target_epsilon = target_epsilon
        self.num_rounds = num_rounds
        self.delta = float(delta)
        self.sampling = sampling
        self.sample_rate = sample_rate
        self.clients_per_round = clients_per_round
        self.population = population
        self.max_epsilon = max_epsilon
        self.value_discretization_interval = value_discretization_interval
        if noise_source not in NOISE_SOURCES:
            raise ConfigError("dp-noise-source", f"must be one of {', '.join(NOISE_SOURCES)}, got {noise_source!r}")
        self._rng = np.random.default_rng(seed)
        # Seeded: sampling and noise share one generator (reproducible). Secure: both from the CSPRNG.
        self.noise = SecureNoise() if noise_source == SECURE else SeededNoise(seed, rng=self._rng)
        self.sampler = self.noise if noise_source == SECURE else self._rng
        self.accountant: ClientLevelAccountant | None = None
        self.expected_clients: float | None = None
        self.privacy_records: dict[int, dict[str, Any]] = {}
        self.clip_stats: dict[int, dict[str, float]] = {}
        self.budget_exhausted = False
        self._configured: set[int] = set()
        if population is not None:
            self._setup(population)

    # ------------------------------------------------------------------------------------------

    @property
    def rejections(self) -> dict[int, list[tuple[int, str]]]:
        return self.strategy.rejections

    def _setup(self, population: int) -> None:
        if self.accountant is not None:
            return
        n = int(population)
        if self.sampling == "all":
            q, size = 1.0, n
        elif self.sampling == "poisson":
            q = self.sample_rate if self.sample_rate is not None else min(1.0, self.clients_per_round / n)
            size = None
        else:
            size = self.clients_per_round if self.clients_per_round is not None else max(1, round(self.sample_rate * n))
            if size > n:
                raise ConfigError("dp-clients-per-round", f"{size} is more than the population {n}")
            q = size / n
        self.population = n
        self.sample_rate = q
        self.expected_clients = q * n if size is None else float(size)
        if self.noise_multiplier is None:
            self.noise_multiplier = calibrate_noise_multiplier(
                target_epsilon=self.target_epsilon, delta=self.delta, sample_rate=q, rounds=int(self.num_rounds),
                sampling=self.sampling, population=n, sample_size=size,
                value_discretization_interval=self.value_discretization_interval,
            )
            log(INFO, "client-dp: calibrated noise multiplier %.4f for epsilon=%.3g over %d rounds (q=%.4g)",
                self.noise_multiplier, self.target_epsilon, self.num_rounds, q)
        self.accountant = ClientLevelAccountant(
            noise_multiplier=float(self.noise_multiplier), sample_rate=q, delta=self.delta, sampling=self.sampling,
            population=n, sample_size=size, clipping_norm=self.clipping_norm, expected_clients=self.expected_clients,
            value_discretization_interval=self.value_discretization_interval,
        )

    def privacy_record(self) -> dict[str, Any] | None:
        """The current ``privacy.client_level`` record (None before the population is known)."""
        if self.accountant is None:
            return None
        record = self.accountant.record()
        if self.num_rounds:
            record["planned_rounds"] = int(self.num_rounds)
            record["planned_epsilon"] = self.accountant.epsilon(int(self.num_rounds))
        record["clipping_norm"] = self.clipping_norm
        record["noise_source"] = self.noise.name
        return record

    def sample_nodes(self, nodes: list[int]) -> list[int]:
        if self.sampling == "all":
            return list(nodes)
        if self.sampling == "poisson":
            keep = self.sampler.random(len(nodes)) < self.sample_rate
            return [n for n, k in zip(nodes, keep, strict=True) if k]
        size = int(self.expected_clients)
        if self.sampler is self._rng:
            return sorted(int(n) for n in self._rng.choice(nodes, size=size, replace=False))
        order = np.argsort(self.sampler.random(len(nodes)))  # a uniformly random subset of `size` nodes
        return sorted(int(nodes[i]) for i in order[:size])

    # ------------------------------------------------------------------------------------------
    # Strategy API

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        nodes = self.strategy.order_nodes(wait_for_nodes(grid, self.strategy.min_available_nodes))
        self._setup(len(nodes))
        if len(nodes) != self.population:
            log(WARNING, "client-dp: %d nodes connected, accounting assumes a population of %d", len(nodes), self.population)
        if self.max_epsilon is not None and self.accountant.would_exceed(self.max_epsilon):
            self.budget_exhausted = True
            log(WARNING, "client-dp: the next round would exceed max epsilon %.3g (now %.3g); no more training",
                self.max_epsilon, self.accountant.epsilon())
            report = self.strategy.start_report("train", server_round, [], self.strategy.min_train_replies)
            report.note = f"no training: the next round would exceed the client-level max epsilon {self.max_epsilon:g}"
            return []
        sampled = self.strategy.order_nodes(self.sample_nodes(nodes))
        log(INFO, "configure_train: client-dp %s sampling chose %d of %d nodes (expected %.2f)",
            self.sampling, len(sampled), len(nodes), self.expected_clients)
        self._configured.add(server_round)
        return self.strategy.build_train_messages(server_round, arrays, config, sampled)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        state = self.strategy.round_state(server_round)
        if server_round not in self._configured or state is None:
            if replies:
                self.strategy.validate_replies(server_round, replies)  # records them as rejected
            return None, None
        self._configured.discard(server_round)
        valid = self.strategy.validate_replies(server_round, replies)  # non-finite rejected before clipping
        S = self.clipping_norm
        space = self.strategy.update_space(state)
        total = {k: np.zeros(spec.shape, dtype=np.float64) for k, spec in space.items()}
        norms: list[float] = []
        for update in self.strategy.bounded_updates(valid, state):
            clipped, norm, _ = clip_update(update, S)
            norms.append(norm)
            for key, value in clipped.items():
                total[key] += value
        self.clip_stats[server_round] = {
            "clipped_fraction": float(np.mean([n > S for n in norms])) if norms else 0.0,
            "median_update_norm": float(np.median(norms)) if norms else 0.0,
        }
        metrics = self.strategy.aggregate_metrics(valid, len(replies) - len(valid))
        metrics["client-dp-clipped-fraction"] = self.clip_stats[server_round]["clipped_fraction"]
        note = "" if len(valid) >= self.strategy.min_train_replies else (
            f"{len(valid)} valid replies, fewer than min-train-nodes {self.strategy.min_train_replies}; "
            "the accounted noisy aggregate was released all the same (client-level DP)")
        return self._release(server_round, state, total, len(valid), metrics, note)

    def train_secure(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid, send: Send
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """A round under secure aggregation: the devices clip to S (and to the strategy's norm
        bound, if smaller) and mask with weight 1; the noise goes on the unmasked sum. An aborted
        round releases the noise alone over the previous global adapter."""
        messages = list(self.configure_train(server_round, arrays, config, grid))
        state = self.strategy.round_state(server_round)
        if server_round not in self._configured or state is None:  # the budget is spent: no round
            return None, None
        self._configured.discard(server_round)
        bounds = [b for b in (self.clipping_norm, self.strategy.norm_bound) if b]
        outcome = self.strategy.run_secure(server_round, messages, send, min(bounds), "uniform", 2, 1)
        metrics = self.strategy.aggregate_metrics(outcome.valid, outcome.num_rejected)
        metrics.update(outcome.metrics())
        survivors = len(outcome.result.survivors) if outcome.result is not None else 0
        if outcome.result is None:
            outcome.record["released"] = "noise only"
            note = (f"{outcome.abort_reason}: the accounted noise was released all the same over the previous global "
                    "adapter (client-level DP)")
        else:
            outcome.record["released"] = "noisy sum"
            # |released − plaintext| per coordinate of the global step (before the cast to the adapter's dtype)
            outcome.record["update_error_bound"] = (self.strategy.server_learning_rate * survivors
                                                    * outcome.plan.error_bound(outcome.result.quantization) / self.expected_clients)
            note = "" if survivors >= self.strategy.min_train_replies else (
                f"{survivors} updates in the secure sum, fewer than min-train-nodes {self.strategy.min_train_replies}; "
                "the accounted noisy aggregate was released all the same (client-level DP)")
        return self._release(server_round, state, outcome.sum_update(), survivors, metrics, note)

    def _release(self, server_round: int, state: Any, total: dict[str, np.ndarray], contributors: int,
                 metrics: MetricRecord, note: str) -> tuple[ArrayRecord, MetricRecord]:
        """global + (Σ clipped updates + N(0, σ²S²)) / m, accounted. ``total`` in update-space key
        order: the noise is drawn in that order, the same in both aggregation modes."""
        std = float(self.noise_multiplier) * self.clipping_norm
        for key, value in total.items():
            value += self.noise.normal(value.shape, std)
        mean = {k: v / self.expected_clients for k, v in total.items()}
        new_global = self.strategy.apply_update(state, mean)
        self.accountant.step()
        record = self.privacy_record()
        self.privacy_records[server_round] = record
        report = self.strategy.phase_report("train", server_round)
        if report is not None:
            report.aggregated = True
            if note:
                report.note = note
        if not contributors:
            log(WARNING, "Round %d: no update in the aggregate; releasing the noise-only aggregate (client-dp)", server_round)
        log(INFO, "client-dp: round %d, %d clipped updates, noise std %.4g on the sum / %.2f; epsilon=%.4f (delta=%g)",
            server_round, contributors, std, self.expected_clients, record["epsilon"], self.delta)
        metrics["client-dp-epsilon"] = float(record["epsilon"])
        metrics["client-dp-delta"] = self.delta
        metrics["client-dp-noise-multiplier"] = float(self.noise_multiplier)
        metrics["client-dp-sample-rate"] = float(self.sample_rate)
        return self.strategy.to_record(new_global), metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def configure_identify(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> list[Message]:
        return self.strategy.configure_identify(server_round, arrays, config, grid)

    def aggregate_identify(self, server_round: int, replies: Iterable[Message]) -> None:
        self.strategy.aggregate_identify(server_round, replies)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped strategy's state, the sampling-and-noise RNG, and the accountant (its
        parameters and the rounds composed so far: every round is the same event)."""
        return {
            "strategy": self.strategy.state_dict(),
            "rng": self._rng.bit_generator.state,
            "population": self.population,
            "sample_rate": self.sample_rate,
            "noise_multiplier": self.noise_multiplier,
            "accounted_rounds": self.accountant.rounds if self.accountant is not None else 0,
            "budget_exhausted": self.budget_exhausted,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.strategy.load_state_dict(state["strategy"])
        self._rng.bit_generator.state = state["rng"]
        self.budget_exhausted = bool(state["budget_exhausted"])
        if state["population"] is None:  # saved before the first round configured anything
            return
        self.accountant = None
        self.population = int(state["population"])
        self.sample_rate = float(state["sample_rate"])
        self.noise_multiplier = float(state["noise_multiplier"])  # as calibrated: not calibrated again
        self._setup(self.population)
        self.accountant.rounds = int(state["accounted_rounds"])

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        log(INFO, "\t├──> Client-level DP (DP-FedAvg): clipping_norm=%s noise_multiplier=%s sampling=%s "
            "sample_rate=%s delta=%g", self.clipping_norm, self.noise_multiplier, self.sampling, self.sample_rate,
            self.delta)
        self.strategy.summary()
