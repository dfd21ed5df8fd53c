"""What a device masks in a secure round, as the server's setup message tells it.

Next to the protocol's setup fields (``messages.SetupRequest``) the setup record carries an
:class:`UpdatePlan`: the layout of the update space (the tensors the strategy aggregates, at the
global shapes, in order), the L2 norm the device clips its update to (client-level DP's S, the
strategy's norm bound, or none) and how it weights its input (its num-examples, capped at the
grid's max weight, or 1 under client-level DP, where the server divides the noisy sum by the
expected number of clients). Both sides build the vector from this one description, so the
server can unflatten the unmasked sum without ever seeing one update.

The record travels as ``SECAGG_RECORD`` in every message of a secure round, in both directions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.layout import VectorLayout
from fedpriv.secagg.messages import Fields, read
from fedpriv.secagg.quantization import QuantizationSpec

SECAGG_RECORD = "secagg"  # the ConfigRecord of a secure round's messages (requests and replies)
WEIGHTINGS = ("num-examples", "uniform")
_DIMS = "<i8"


def l2_clip(vector: np.ndarray, bound: float) -> np.ndarray:
    """``vector`` scaled to L2 norm at most ``bound`` (0: unchanged). Refuses non-finite values,
    which ``min(1, bound / nan)`` would let through."""
    vector = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm):
        raise ValueError("cannot clip a non-finite update")
    if bound <= 0 or norm <= bound:
        return vector
    return vector * (bound / norm)


@dataclass(frozen=True)
class UpdatePlan:
    layout: VectorLayout
    l2_bound: float = 0.0  # the device clips its update to this L2 norm; 0: no L2 clip
    weighting: str = "num-examples"

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if not (math.isfinite(self.l2_bound) and self.l2_bound >= 0):
            raise ValueError(f"the L2 bound must be zero or a positive number, got {self.l2_bound!r}")
        if not self.layout.keys:
            raise ValueError("the update layout names no tensor")

    def to_fields(self) -> Fields:
        shapes = self.layout.shapes
        return {
            "update-keys": list(self.layout.keys),
            "update-ndims": np.array([len(s) for s in shapes], dtype=_DIMS).tobytes(),
            "update-dims": np.array([d for s in shapes for d in s], dtype=_DIMS).tobytes(),
            "update-l2-bound": float(self.l2_bound),
            "update-weighting": self.weighting,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> UpdatePlan:
        keys = read(fields, "update-keys", list)
        if not keys or not all(isinstance(k, str) for k in keys) or len(set(keys)) != len(keys):
            raise ProtocolError("field 'update-keys' must list distinct tensor names")
        ndims, dims = (read(fields, name, bytes) for name in ("update-ndims", "update-dims"))
        if len(ndims) != 8 * len(keys) or len(dims) % 8:
            raise ProtocolError("fields 'update-ndims' / 'update-dims' do not describe one shape per tensor")
        ranks = np.frombuffer(ndims, dtype=_DIMS)
        sizes = np.frombuffer(dims, dtype=_DIMS)
        if ranks.min() < 0 or int(ranks.sum()) != sizes.size or (sizes.size and sizes.min() < 0):
            raise ProtocolError("fields 'update-ndims' / 'update-dims' do not describe one shape per tensor")
        shapes, offset = [], 0
        for rank in ranks:
            shapes.append(tuple(int(d) for d in sizes[offset : offset + rank]))
            offset += int(rank)
        try:
            return cls(VectorLayout(tuple(keys), tuple(shapes)), read(fields, "update-l2-bound", float),
                       read(fields, "update-weighting", str))
        except ValueError as err:
            raise ProtocolError(f"update plan: {err}") from None

    def weight(self, num_examples: float, spec: QuantizationSpec) -> int:
        """The integer weight a device puts inside its masked vector (the server checks their sum)."""
        if self.weighting == "uniform":
            return 1
        return int(min(max(int(num_examples), 0), spec.max_weight))

    def clip_margin(self, spec: QuantizationSpec) -> float:
        """How far below the L2 bound a device clips, so that its update *after quantization* stays
        within the bound: rounding moves each of d coordinates by less than the coordinate error,
        the whole vector by less than √d times that. (Under client-level DP the bound is the
        sensitivity the accountant assumes.)"""
        return math.sqrt(self.layout.size) * spec.coordinate_error if self.l2_bound > 0 else 0.0

    def error_bound(self, spec: QuantizationSpec) -> float:
        """Bound on each coordinate of one device's input as the server sums it, against its
        update clipped to the L2 bound: the rounding plus the clip margin."""
        return spec.coordinate_error + self.clip_margin(spec)

    def vector(self, update: Mapping[str, np.ndarray], spec: QuantizationSpec) -> np.ndarray:
        """The flat update in the layout's order, clipped to the L2 bound less the clip margin.
        ValueError if the update does not match the layout (a missing, extra or misshapen tensor),
        is not finite, or the margin leaves no room under the bound."""
        vector = self.layout.flatten(update)
        if self.l2_bound <= 0:
            return l2_clip(vector, 0.0)
        bound = self.l2_bound - self.clip_margin(spec)
        if bound <= 0:
            raise ValueError(f"the quantization step {spec.step:g} leaves no room under the L2 bound {self.l2_bound:g}")
        return l2_clip(vector, bound)
