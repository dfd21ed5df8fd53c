"""Quantization of weighted float updates into Z_(2^k), and back, with a stated error bound.

Client i clips every coordinate of its update x_i to [−c, c] and maps it to an integer
q = round((x + c)/Δ) in [0, L], L = 2^b − 1 levels, step Δ = 2c/L. It sends the vector
(w_i·q_i, w_i) (its integer weight w_i ≤ W_max, e.g. num-examples, inside the masked vector), so the
unmasked sum is (A, W) = (Σ w_i q_i, Σ w_i) exactly, and the server recovers

    Σ w_i x̂_i = Δ·A − c·W,        the weighted mean is that divided by W.

No wrap-around: with n contributors A ≤ n·W_max·L. ``QuantizationSpec.for_clients`` picks
b = min(32, k − bitlen(n·W_max)), so n·W_max·L < 2^k, and the server rejects an unmasked sum above
that bound (a wrong mask or a malformed input would almost surely land above it).

Error bound (for values inside [−c, c]; values outside are clipped to it first, a bias the bound does
not cover, so choose c to cover the updates — under client-level DP, c = the L2 clipping norm):

* deterministic rounding (to nearest): |x̂ − x| ≤ Δ/2 per coordinate;
* stochastic rounding (unbiased, E[x̂] = x): |x̂ − x| < Δ per coordinate, std ≤ Δ/2;
* the weighted sum of n clients: ≤ W·(Δ/2) or < W·Δ per coordinate (W = Σ w_i; W = n for unit
  weights); the weighted mean: the per-coordinate bound itself, whatever n.

All up to float64 rounding (A < 2^53 is exact for k ≤ 48). ``describe()`` and ``to_metrics()``
expose the range, the bits and the bounds so a run can record them in metrics.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROUNDINGS = ("stochastic", "deterministic")
# Byte-aligned so a masked vector packs into k/8 bytes per coordinate.
MODULUS_BITS = (16, 24, 32, 40, 48, 56, 64)
DEFAULT_MODULUS_BITS = 48  # 6 bytes per coordinate: 1.5× fp32
DEFAULT_MAX_WEIGHT = 65_535
MAX_VALUE_BITS = 32
MIN_VALUE_BITS = 8


@dataclass(frozen=True)
class QuantizationSpec:
    clip_range: float  # c: coordinates are clipped to [−c, c]
    value_bits: int  # b: 2^b − 1 levels over [−c, c]
    modulus_bits: int = DEFAULT_MODULUS_BITS  # k: arithmetic and masks in Z_(2^k)
    max_weight: int = DEFAULT_MAX_WEIGHT  # W_max: a client's integer weight is in [0, W_max]
    rounding: str = "stochastic"

    def __post_init__(self) -> None:
        c = self.clip_range
        if isinstance(c, bool) or not isinstance(c, int | float) or not (math.isfinite(c) and c > 0):
            raise ValueError(f"clip range must be a positive finite number, got {c!r}")
        if self.modulus_bits not in MODULUS_BITS:
            raise ValueError(f"modulus bits must be one of {MODULUS_BITS}, got {self.modulus_bits!r}")
        if isinstance(self.value_bits, bool) or not isinstance(self.value_bits, int) or not 1 <= self.value_bits <= MAX_VALUE_BITS:
            raise ValueError(f"value bits must be an integer in 1..{MAX_VALUE_BITS}, got {self.value_bits!r}")
        if isinstance(self.max_weight, bool) or not isinstance(self.max_weight, int) or self.max_weight < 1:
            raise ValueError(f"max weight must be a positive integer, got {self.max_weight!r}")
        if self.max_weight * self.levels >= 1 << self.modulus_bits:
            raise ValueError(f"one client's weighted value (max weight × 2^{self.value_bits}) overflows 2^{self.modulus_bits}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")

    @classmethod
    def for_clients(
        cls,
        num_clients: int,
        clip_range: float,
        *,
        modulus_bits: int = DEFAULT_MODULUS_BITS,
        max_weight: int = DEFAULT_MAX_WEIGHT,
        rounding: str = "stochastic",
    ) -> QuantizationSpec:
        """The finest grid with which the sum of ``num_clients`` weighted inputs cannot wrap."""
        if num_clients < 1:
            raise ValueError(f"need at least one client, got {num_clients}")
        bits = min(MAX_VALUE_BITS, modulus_bits - (num_clients * max_weight).bit_length())
        if bits < MIN_VALUE_BITS:
            raise ValueError(
                f"{num_clients} clients with weights up to {max_weight} leave {bits} bits per value in Z_(2^{modulus_bits}); "
                "use a larger modulus or a smaller max weight"
            )
        return cls(float(clip_range), bits, modulus_bits, max_weight, rounding)

    @property
    def levels(self) -> int:
        return (1 << self.value_bits) - 1

    @property
    def step(self) -> float:
        return 2.0 * self.clip_range / self.levels

    @property
    def max_clients(self) -> int:
        """Most contributors whose sum cannot wrap around the modulus."""
        return ((1 << self.modulus_bits) - 1) // (self.max_weight * self.levels)

    @property
    def bytes_per_coordinate(self) -> int:
        return self.modulus_bits // 8

    @property
    def coordinate_error(self) -> float:
        """Bound on |x̂ − x| per coordinate of one client (strict for stochastic rounding)."""
        return self.step / 2 if self.rounding == "deterministic" else self.step

    def sum_error_bound(self, total_weight: int) -> float:
        """Bound on each coordinate of Σ w_i x̂_i − Σ w_i x_i."""
        return total_weight * self.coordinate_error

    def check_capacity(self, num_clients: int) -> None:
        if num_clients > self.max_clients:
            raise ValueError(f"{num_clients} clients exceed this grid's capacity of {self.max_clients} without wrap-around")

    def describe(self) -> dict[str, float | int | str]:
        return {
            "clip_range": self.clip_range,
            "value_bits": self.value_bits,
            "modulus_bits": self.modulus_bits,
            "max_weight": self.max_weight,
            "rounding": self.rounding,
            "step": self.step,
            "coordinate_error_bound": self.coordinate_error,
        }

    def to_metrics(self, total_weight: int | None = None) -> dict[str, float | int]:
        """Numbers only (Flower's MetricRecord): the range, the grid and the error bounds."""
        metrics: dict[str, float | int] = {
            "secagg-clip-range": self.clip_range,
            "secagg-value-bits": self.value_bits,
            "secagg-modulus-bits": self.modulus_bits,
            "secagg-stochastic-rounding": int(self.rounding == "stochastic"),
            "secagg-step": self.step,
            "secagg-mean-error-bound": self.coordinate_error,
        }
        if total_weight is not None:
            metrics["secagg-sum-error-bound"] = self.sum_error_bound(total_weight)
        return metrics


def check_weight(weight: int, spec: QuantizationSpec) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int | np.integer) or not 0 <= weight <= spec.max_weight:
        raise ValueError(f"the weight must be an integer in 0..{spec.max_weight}, got {weight!r}")
    return int(weight)


def num_clipped(values: np.ndarray, spec: QuantizationSpec) -> int:
    """Coordinates outside [−c, c] (they are clipped, a bias outside the stated error bound)."""
    return int(np.count_nonzero(np.abs(np.asarray(values, dtype=np.float64)) > spec.clip_range))


def quantize(values: np.ndarray, weight: int, spec: QuantizationSpec, rng: np.random.Generator | None = None) -> np.ndarray:
    """(w·q_1, ..., w·q_d, w) as uint64, every entry < 2^k. Refuses non-finite values."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError("cannot quantize a non-finite update")
    w = check_weight(weight, spec)
    scaled = (np.clip(x, -spec.clip_range, spec.clip_range) + spec.clip_range) / spec.step
    if spec.rounding == "deterministic":
        q = np.floor(scaled + 0.5)
    else:
        low = np.floor(scaled)
        q = low + ((rng or np.random.default_rng()).random(x.shape) < scaled - low)
    q = np.clip(q, 0, spec.levels).astype(np.uint64)
    out = np.empty(x.size + 1, dtype=np.uint64)
    np.multiply(q, np.uint64(w), out=out[:-1])
    out[-1] = w
    return out


def dequantize_sum(total: np.ndarray, spec: QuantizationSpec, max_contributors: int) -> tuple[np.ndarray, int]:
    """(Σ w_i x̂_i as float64, Σ w_i) from the unmasked sum. Raises ValueError when the sum is out of
    the range honest inputs can reach (a wrong mask or a malformed input)."""
    total = np.asarray(total, dtype=np.uint64)
    weight = int(total[-1])
    if weight > max_contributors * spec.max_weight:
        raise ValueError(f"unmasked total weight {weight} exceeds {max_contributors} × max weight {spec.max_weight}")
    values = total[:-1]
    if values.size and int(values.max()) > weight * spec.levels:
        raise ValueError("unmasked sum is out of range: a masked input or a revealed share was wrong")
    return values.astype(np.float64) * spec.step - spec.clip_range * weight, weight
