"""fedpriv.strict_json: no NaN / Infinity tokens, numpy scalars written as numbers, 'inf' read back."""

from __future__ import annotations

import json
import math

import numpy as np

from fedpriv import strict_json


def test_non_finite_and_numpy_values_round_trip_as_strict_json():
    data = {"epsilon": math.inf, "nested": [{"loss": np.float32(0.5), "count": np.int64(3)}], "note": "inf"}
    text = strict_json.dumps(data)
    assert "Infinity" not in text and "NaN" not in text
    json.loads(text, parse_constant=lambda token: (_ for _ in ()).throw(ValueError(token)))  # any parser reads it
    back = strict_json.loads(text, numeric_keys={"epsilon", "loss", "count"})
    assert back["epsilon"] == math.inf and back["nested"][0] == {"loss": 0.5, "count": 3}
    assert back["note"] == "inf"  # not a numeric field: the string stays a string
    assert math.isnan(strict_json.decode_number("nan")) and strict_json.decode_number("x") == "x"
