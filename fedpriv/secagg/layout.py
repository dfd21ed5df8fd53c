"""The order in which a dict of update tensors becomes the flat vector SecAgg+ sums.

Both sides must flatten identically: keys in the given order, each tensor in C order. The server
fixes the order (its update space) and the client checks its update against it before masking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VectorLayout:
    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> VectorLayout:
        return cls(tuple(arrays), tuple(tuple(np.shape(v)) for v in arrays.values()))

    @property
    def size(self) -> int:
        return int(sum(np.prod(shape, dtype=np.int64) for shape in self.shapes))

    def flatten(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """One float64 vector; raises ValueError naming a missing, extra or misshapen tensor."""
        extra = sorted(set(arrays) - set(self.keys))
        if extra:
            raise ValueError(f"tensor {extra[0]!r} is not part of the aggregated update")
        parts = []
        for key, shape in zip(self.keys, self.shapes, strict=True):
            if key not in arrays:
                raise ValueError(f"tensor {key!r} is missing from the update")
            value = np.asarray(arrays[key], dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"tensor {key!r} has shape {value.shape}, expected {shape}")
            parts.append(value.ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    def unflatten(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        vector = np.asarray(vector)
        if vector.size != self.size:
            raise ValueError(f"vector has {vector.size} values, the layout {self.size}")
        out, offset = {}, 0
        for key, shape in zip(self.keys, self.shapes, strict=True):
            count = int(np.prod(shape, dtype=np.int64))
            out[key] = vector[offset : offset + count].reshape(shape)
            offset += count
        return out
