"""Quantization into Z_(2^k): the stated error bounds, no wrap-around, the range check."""

from __future__ import annotations

import numpy as np
import pytest

from fedpriv.secagg.layout import VectorLayout
from fedpriv.secagg.quantization import QuantizationSpec, dequantize_sum, num_clipped, quantize


def _sum(vectors, spec):
    total = np.zeros_like(vectors[0])
    for v in vectors:
        total += v
    return total & np.uint64((1 << spec.modulus_bits) - 1)


@pytest.mark.parametrize("rounding", ["deterministic", "stochastic"])
def test_weighted_sum_and_mean_within_the_stated_bound(rounding):
    rng = np.random.default_rng(1)
    n, d = 20, 5000
    spec = QuantizationSpec.for_clients(n, 0.5, max_weight=1000, rounding=rounding)
    xs = [rng.uniform(-0.5, 0.5, d) for _ in range(n)]
    ws = [int(w) for w in rng.integers(0, 1001, n)]
    weighted, total_weight = dequantize_sum(_sum([quantize(x, w, spec, rng) for x, w in zip(xs, ws)], spec), spec, n)
    exact = sum(w * x for x, w in zip(xs, ws))
    assert total_weight == sum(ws)
    assert np.abs(weighted - exact).max() <= spec.sum_error_bound(total_weight) * (1 + 1e-9)
    assert np.abs(weighted / total_weight - exact / total_weight).max() <= spec.coordinate_error * (1 + 1e-9)
    # The bound is not loose by orders of magnitude for one client.
    one = dequantize_sum(quantize(xs[0], 1, spec, rng), spec, 1)[0]
    assert np.abs(one - xs[0]).max() > 0.4 * spec.coordinate_error


def test_stochastic_rounding_is_unbiased():
    spec = QuantizationSpec(1.0, 4, rounding="stochastic")  # a coarse grid: step 2/15
    rng = np.random.default_rng(2)
    x = np.full(200_000, 0.05)
    values = quantize(x, 1, spec, rng)[:-1].astype(np.float64) * spec.step - 1.0
    assert abs(values.mean() - 0.05) < 0.002  # deterministic rounding would give 0.0667
    assert np.abs(values - x).max() < spec.step


def test_no_wrap_around_at_capacity_with_extreme_values():
    n = 64
    spec = QuantizationSpec.for_clients(n, 1.0, max_weight=65_535, rounding="deterministic")
    assert spec.max_clients >= n and spec.value_bits == 48 - (n * 65_535).bit_length()
    top = quantize(np.full(10, 5.0), spec.max_weight, spec)  # clipped to +c, the largest level
    weighted, weight = dequantize_sum(_sum([top] * n, spec), spec, n)
    assert weight == n * spec.max_weight
    np.testing.assert_allclose(weighted, n * spec.max_weight * 1.0, rtol=1e-12)


def test_range_check_rejects_a_sum_no_honest_inputs_reach():
    spec = QuantizationSpec.for_clients(4, 1.0)
    rng = np.random.default_rng(3)
    garbage = rng.integers(0, 2**48, size=101, dtype=np.uint64)  # e.g. a mask not removed
    garbage[-1] = 10
    with pytest.raises(ValueError, match="out of range"):
        dequantize_sum(garbage, spec, 4)
    heavy = np.zeros(3, dtype=np.uint64)
    heavy[-1] = 4 * spec.max_weight + 1
    with pytest.raises(ValueError, match="total weight"):
        dequantize_sum(heavy, spec, 4)


def test_inputs_that_would_break_the_bound_are_refused():
    spec = QuantizationSpec.for_clients(4, 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        quantize(np.array([0.0, np.nan]), 1, spec)
    for weight in (-1, spec.max_weight + 1, 1.5, True):
        with pytest.raises(ValueError, match="weight"):
            quantize(np.zeros(3), weight, spec)
    assert num_clipped(np.array([-2.0, 0.5, 1.0, 1.5]), spec) == 2
    with pytest.raises(ValueError, match="bits per value"):
        QuantizationSpec.for_clients(1000, 1.0, modulus_bits=32)
    with pytest.raises(ValueError, match="capacity"):
        QuantizationSpec.for_clients(4, 1.0).check_capacity(10**9)
    with pytest.raises(ValueError, match="clip range"):
        QuantizationSpec.for_clients(4, float("inf"))
    with pytest.raises(ValueError, match="modulus bits"):
        QuantizationSpec(1.0, 16, modulus_bits=50)


def test_metrics_expose_range_grid_and_bounds():
    spec = QuantizationSpec.for_clients(10, 0.25, rounding="deterministic")
    metrics = spec.to_metrics(total_weight=70)
    assert metrics["secagg-clip-range"] == 0.25
    assert metrics["secagg-value-bits"] == spec.value_bits
    assert metrics["secagg-mean-error-bound"] == pytest.approx(spec.step / 2)
    assert metrics["secagg-sum-error-bound"] == pytest.approx(70 * spec.step / 2)
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values())
    assert spec.describe()["rounding"] == "deterministic"


def test_layout_flattens_and_restores_in_key_order_and_names_bad_tensors():
    arrays = {"b": np.arange(6.0).reshape(2, 3), "a": np.array([7.0])}
    layout = VectorLayout.of(arrays)
    flat = layout.flatten(arrays)
    assert flat.tolist() == [0, 1, 2, 3, 4, 5, 7] and layout.size == 7
    back = layout.unflatten(flat)
    assert list(back) == ["b", "a"] and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    with pytest.raises(ValueError, match="'a' is missing"):
        layout.flatten({"b": arrays["b"]})
    with pytest.raises(ValueError, match="'c' is not part"):
        layout.flatten({**arrays, "c": np.zeros(1)})
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        layout.flatten({"b": np.zeros((3, 2)), "a": arrays["a"]})
