"""Strict JSON for fedpriv's records (`metrics.json`, a device's log): no NaN / Infinity tokens.

JSON has no infinity, and Python's `json` writes one as a token other parsers refuse. A non-finite
number (ε = ∞ of a device without a formal guarantee, an infinite perplexity) is written as the
string "inf" ("-inf", "nan"), and read back as a float in the fields known to hold numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from typing import Any

NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_number(value: Any) -> Any:
    """A float JSON can hold: non-finite floats become "inf" / "-inf" / "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def encode(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, encoded by `encode_number` (numpy scalars
    become Python numbers first)."""
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if not isinstance(value, float | int | str | bool) and callable(getattr(value, "item", None)):
        return encode_number(value.item())  # a numpy scalar: its Python number
    return encode_number(value)


def decode_number(value: Any) -> Any:
    """The inverse of `encode_number`: "inf" / "-inf" / "nan" become floats, anything else is kept."""
    return NONFINITE[value] if isinstance(value, str) and value in NONFINITE else value


def dumps(data: Any, indent: int | None = None) -> str:
    return json.dumps(encode(data), indent=indent, allow_nan=False)


def loads(text: str, numeric_keys: Collection[str]) -> Any:
    """Parse `text`; "inf" (and "-inf", "nan") in a field named in `numeric_keys` becomes a float."""

    def decode(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: decode_number(v) if k in numeric_keys else v for k, v in obj.items()}

    return json.loads(text, object_hook=decode)
