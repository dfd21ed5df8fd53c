"""Where DP noise comes from: a CSPRNG keyed from the OS for deployments, a seeded generator for
reproducible simulations. Both sides use it (record-level DP-SGD on the device, client-level
DP-FedAvg at the server), and each run records which one it used.

Opacus' own `secure_mode` needs torchcsprng, which has no build for torch 2.x, so the secure source
is written here from `cryptography`'s ChaCha20: its keystream (keyed with 32 bytes from
`os.urandom`) gives uniform 53-bit doubles, Box–Muller turns pairs of them into normals, and, as
Opacus' secure mode does against floating-point attacks on the Gaussian mechanism (Mironov 2012;
Holohan & Braghin 2021), every noise value is the sum of four such draws, halved.
"""

from __future__ import annotations

import math
import os
from typing import Protocol

import numpy as np

SECURE = "secure"
SEEDED = "seeded"
NOISE_SOURCES = (SECURE, SEEDED)
_MANTISSA = float(2**53)


class NoiseSource(Protocol):
    name: str  # recorded in metrics.json and the device's log; read by the audit
    cryptographic: bool

    def normal(self, shape: tuple[int, ...], std: float) -> np.ndarray: ...


class SeededNoise:
    """numpy's PCG64 from a seed (or a generator the caller also draws from): the same seed gives
    the same noise (simulations, tests)."""

    cryptographic = False

    def __init__(self, seed: int | None = None, rng: np.random.Generator | None = None) -> None:
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.name = f"seeded numpy PCG64 (seed {seed}): reproducible, not cryptographic"

    def normal(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        return self.rng.normal(0.0, std, size=shape)


class SecureNoise:
    """ChaCha20 keystream keyed from the OS, Box–Muller, sum of four draws."""

    cryptographic = True
    name = "ChaCha20 CSPRNG keyed from os.urandom, Box-Muller, sum of four draws"

    def __init__(self, key: bytes | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

        key = os.urandom(32) if key is None else key
        if len(key) != 32:
            raise ValueError("a ChaCha20 key has 32 bytes")
        # 16-byte nonce = 4-byte block counter (0) + 12 random bytes; one stream per source.
        self._stream = Cipher(algorithms.ChaCha20(key, bytes(4) + os.urandom(12)), mode=None).encryptor()

    def random(self, count: int) -> np.ndarray:
        """Alias of `uniform`, numpy Generator style (Poisson sampling draws with it)."""
        return self.uniform(count)

    def uniform(self, count: int) -> np.ndarray:
        """`count` doubles uniform on (0, 1): 53 random bits each, never exactly 0."""
        words = np.frombuffer(self._stream.update(bytes(8 * count)), dtype="<u8")
        return ((words >> np.uint64(11)).astype(np.float64) + 0.5) / _MANTISSA

    def _standard_normal(self, count: int) -> np.ndarray:
        pairs = (count + 1) // 2
        u1, u2 = self.uniform(pairs), self.uniform(pairs)
        radius = np.sqrt(-2.0 * np.log(u1))
        z = np.concatenate([radius * np.cos(2 * math.pi * u2), radius * np.sin(2 * math.pi * u2)])
        return z[:count]

    def normal(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        count = int(np.prod(shape)) if shape else 1
        total = sum(self._standard_normal(count) for _ in range(4))  # N(0, 4): halved below to N(0, 1)
        return (std * total / 2.0).reshape(shape)


def noise_source(kind: str, seed: int) -> NoiseSource:
    if kind == SECURE:
        return SecureNoise()
    if kind == SEEDED:
        return SeededNoise(seed)
    raise ValueError(f"noise source must be one of {', '.join(NOISE_SOURCES)}, got {kind!r}")
