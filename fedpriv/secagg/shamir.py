"""Shamir secret sharing over the prime field F_p, p = 2^127 − 1 (a Mersenne prime).

A secret of any length is cut into 15-byte chunks (120 bits < 127, so every chunk is a field element
and the encoding is injective); each chunk gets its own random polynomial of degree t − 1 with the
chunk as constant term. A share is the polynomials' values at the holder's evaluation point x, each
as 16 big-endian bytes: a 32-byte secret (a seed or an X25519 private key) gives 48-byte shares.
Any t shares reconstruct the secret (Lagrange interpolation at 0); fewer than t reveal nothing about
it, since for every candidate secret exactly one polynomial fits the t − 1 known values.

Written by hand because `cryptography` has no secret sharing and Flower's helper pulls in
pycryptodome over GF(2^128) with padding; this is ~60 lines of field arithmetic on Python ints.
Coefficients come from ``secrets`` (the OS CSPRNG).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping, Sequence

from fedpriv.secagg.errors import ProtocolError

PRIME = (1 << 127) - 1
CHUNK_BYTES = 15
ELEMENT_BYTES = 16


def num_chunks(secret_len: int) -> int:
    return max(1, -(-secret_len // CHUNK_BYTES))


def share_size(secret_len: int) -> int:
    """Bytes of one share of a ``secret_len``-byte secret."""
    return num_chunks(secret_len) * ELEMENT_BYTES


def _check_points(xs: Sequence[int]) -> None:
    if len(set(xs)) != len(xs):
        raise ValueError("evaluation points must be distinct")
    if any(not 0 < x < PRIME for x in xs):
        raise ValueError("evaluation points must be in 1..p-1")


def split_secret(secret: bytes, threshold: int, xs: Sequence[int]) -> dict[int, bytes]:
    """Shares of ``secret`` at the points ``xs``; any ``threshold`` of them reconstruct it."""
    _check_points(xs)
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be in 1..{len(xs)} (number of shares), got {threshold}")
    chunks = [int.from_bytes(secret[i : i + CHUNK_BYTES], "big") for i in range(0, max(len(secret), 1), CHUNK_BYTES)]
    shares: dict[int, bytearray] = {x: bytearray() for x in xs}
    for chunk in chunks:
        coefficients = [chunk] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
        for x in xs:
            value = 0
            for c in reversed(coefficients):  # Horner
                value = (value * x + c) % PRIME
            shares[x] += value.to_bytes(ELEMENT_BYTES, "big")
    return {x: bytes(s) for x, s in shares.items()}


@functools.lru_cache(maxsize=256)
def lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """λ_j with f(0) = Σ λ_j f(x_j) for every polynomial of degree < len(xs). Cached: the server
    combines many secrets from the same holders."""
    coefficients = []
    for j, xj in enumerate(xs):
        numerator, denominator = 1, 1
        for m, xm in enumerate(xs):
            if m != j:
                numerator = numerator * xm % PRIME
                denominator = denominator * (xm - xj) % PRIME
        coefficients.append(numerator * pow(denominator, -1, PRIME) % PRIME)
    return tuple(coefficients)


def combine_shares(shares: Mapping[int, bytes], threshold: int, secret_len: int) -> bytes:
    """The secret from at least ``threshold`` shares (the ``threshold`` lowest points are used).

    Raises ProtocolError when the shares cannot come from one sharing of a ``secret_len``-byte
    secret (wrong size, or an interpolated chunk outside its byte range)."""
    if len(shares) < threshold:
        raise ProtocolError(f"{len(shares)} shares cannot reconstruct a secret with threshold {threshold}")
    xs = sorted(shares)[:threshold]
    _check_points(xs)
    size = share_size(secret_len)
    for x in xs:
        if len(shares[x]) != size:
            raise ProtocolError(f"a share is {len(shares[x])} bytes, expected {size}")
    lambdas = lagrange_at_zero(tuple(xs))
    out = bytearray()
    for c in range(num_chunks(secret_len)):
        lo, hi = c * ELEMENT_BYTES, (c + 1) * ELEMENT_BYTES
        value = sum(lam * int.from_bytes(shares[x][lo:hi], "big") for lam, x in zip(lambdas, xs, strict=True)) % PRIME
        width = min(CHUNK_BYTES, secret_len - c * CHUNK_BYTES)
        if value >= 1 << (8 * width):
            raise ProtocolError("the shares are inconsistent: they do not interpolate to a secret of the expected size")
        out += value.to_bytes(width, "big")
    return bytes(out)
