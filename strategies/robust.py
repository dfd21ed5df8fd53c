"""Robust aggregation options: per-client update norm bounding and coordinate-wise trimmed mean.

* Norm bounding clips each client's update (reply minus what it was sent) to an L2 bound before
  anything is summed. It needs one client's update at a time, so it can also run on the client
  before secure aggregation.
* Coordinate-wise trimmed mean sorts every coordinate across clients and drops the ``beta``
  fraction at each end. It needs every client's update in plaintext, so it cannot be combined
  with secure aggregation (constructing it that way raises :class:`fedpriv.errors.ConfigError`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from fedpriv.errors import ConfigError

Update = dict[str, np.ndarray]


def l2_norm(update: Mapping[str, np.ndarray]) -> float:
    """Global L2 norm over every tensor of an update (float64 accumulation)."""
    total = 0.0
    for value in update.values():
        flat = np.asarray(value, dtype=np.float64).ravel()
        total += float(np.dot(flat, flat))
    return math.sqrt(total)


def clip_update(update: Mapping[str, np.ndarray], bound: float) -> tuple[Update, float, float]:
    """Scale ``update`` so its global L2 norm is at most ``bound``.

    Returns (clipped update, original norm, scale factor). Raises ValueError on a non-finite
    update: ``min(1, bound / nan)`` would be 1 and let NaN through, so callers must reject
    non-finite updates before clipping (validation does).
    """
    if not bound > 0:
        raise ValueError(f"clipping bound must be positive, got {bound}")
    norm = l2_norm(update)
    if not math.isfinite(norm):
        raise ValueError("cannot clip a non-finite update; reject it before clipping")
    scale = 1.0 if norm <= bound else bound / norm
    if scale == 1.0:
        return {k: np.asarray(v, dtype=np.float64) for k, v in update.items()}, norm, 1.0
    return {k: np.asarray(v, dtype=np.float64) * scale for k, v in update.items()}, norm, scale


def weighted_mean(updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> Update:
    """Σ (w_i / Σw) u_i per key, float64, accumulated in the given order."""
    if not updates:
        raise ValueError("no updates to average")
    total = float(sum(weights))
    if not total > 0:
        raise ValueError("weights must sum to a positive number")
    out: Update = {}
    for update, weight in zip(updates, weights, strict=True):
        factor = float(weight) / total
        for key, value in update.items():
            contribution = np.asarray(value, dtype=np.float64) * factor
            if key in out:
                out[key] += contribution
            else:
                out[key] = contribution
    return out


def trimmed_mean(updates: Sequence[Mapping[str, np.ndarray]], beta: float) -> Update:
    """Coordinate-wise trimmed mean (unweighted): drop int(beta·n) lowest and highest per coordinate."""
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"trim beta must be in [0, 0.5), got {beta}")
    if not updates:
        raise ValueError("no updates to average")
    n = len(updates)
    cut = int(beta * n)
    out: Update = {}
    for key in updates[0]:
        stacked = np.stack([np.asarray(u[key], dtype=np.float64) for u in updates])
        if cut:
            stacked = np.sort(stacked, axis=0)[cut : n - cut]
        out[key] = stacked.mean(axis=0)
    return out


def check_robust_config(
    norm_bound: float | None = None,
    trim_beta: float | None = None,
    secure_aggregation: bool = False,
) -> None:
    """Raise ConfigError for invalid or incompatible robust options (names the keys)."""
    if norm_bound is not None and not (isinstance(norm_bound, int | float) and norm_bound > 0 and math.isfinite(norm_bound)):
        raise ConfigError("norm-bound", f"must be a positive finite number, got {norm_bound!r}")
    if trim_beta is not None:
        if not (isinstance(trim_beta, int | float) and 0.0 < trim_beta < 0.5):
            raise ConfigError("trim-beta", f"must be in (0, 0.5), got {trim_beta!r}")
        if secure_aggregation:
            raise ConfigError(
                "trim-beta",
                "coordinate-wise trimmed mean (trim-beta) needs every client's update in plaintext and "
                "cannot run with secure-aggregation=true; use norm-bound (per-client, compatible with "
                "secure aggregation) or set secure-aggregation=false",
            )
