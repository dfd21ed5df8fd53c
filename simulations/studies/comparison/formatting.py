"""How the comparison and the seed study write numbers, privacy levels and tables, and make results JSON-ready."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def epsilon_label(epsilon: float | None) -> str:
    """The key of a privacy level in results.json: "none" (no DP) or the ε as written (`8`, `0.5`)."""
    return "none" if epsilon is None else f"{epsilon:g}"


def fmt_eps(label: str) -> str:
    """A privacy level's label for readers: "no DP" or "ε=8"."""
    return "no DP" if label == "none" else f"ε={label}"


def fmt_optional(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def spread(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    """Mean and range of `values`: "11.00 (min 9, max 13)"."""
    if not values:
        return "—"
    return f"{statistics.fmean(values):.2f} (min {fmt.format(min(values))}, max {fmt.format(max(values))})"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def config_sort_key(key: tuple[str, str, str]) -> tuple[str, float, str]:
    """Order of (profile, ε label, strategy): by profile, then ε ascending with no DP last, then strategy."""
    profile, label, strategy = key
    return (profile, math.inf if label == "none" else float(label), strategy)


def json_ready(value: Any) -> Any:
    """JSON has no NaN/inf and no tuple keys: write null, drop the tuple-keyed index (`summary_by_key`)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items() if k != "summary_by_key"}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
