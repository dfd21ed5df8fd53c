"""Shamir secret sharing over F_(2^127 - 1)."""

from __future__ import annotations

import itertools
import os

import pytest

from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.shamir import ELEMENT_BYTES, PRIME, combine_shares, share_size, split_secret


def test_any_threshold_subset_reconstructs_a_32_byte_secret():
    secret = os.urandom(32)
    xs = [1, 2, 3, 4, 5, 6]
    shares = split_secret(secret, 4, xs)
    assert all(len(s) == share_size(32) == 3 * ELEMENT_BYTES for s in shares.values())
    for subset in itertools.combinations(xs, 4):
        assert combine_shares({x: shares[x] for x in subset}, 4, 32) == secret
    assert combine_shares(shares, 4, 32) == secret  # extra shares are fine


@pytest.mark.parametrize("length", [1, 15, 16, 31, 32, 33, 64])
def test_secrets_of_any_length_round_trip(length):
    secret = os.urandom(length)
    shares = split_secret(secret, 3, [10, 20, 30])
    assert combine_shares(shares, 3, length) == secret


def test_fewer_than_threshold_shares_cannot_reconstruct():
    shares = split_secret(os.urandom(32), 4, [1, 2, 3, 4, 5])
    with pytest.raises(ProtocolError, match="cannot reconstruct"):
        combine_shares({x: shares[x] for x in (1, 2, 3)}, 4, 32)


def test_below_threshold_shares_are_consistent_with_every_secret():
    """With t - 1 shares any secret is possible: for two different secrets there is a degree t-1
    polynomial through the same t - 1 shares (so the shares carry no information about it)."""
    secret, other = os.urandom(32), os.urandom(32)
    shares = split_secret(secret, 3, [1, 2, 3])
    known = {x: shares[x] for x in (1, 2)}
    # Per chunk, the parabola through (0, other's chunk), (1, y1), (2, y2), read at x = 3.
    forged = {3: b""}
    for c in range(3):
        lo, hi = c * ELEMENT_BYTES, (c + 1) * ELEMENT_BYTES
        width = min(15, 32 - 15 * c)
        y0 = int.from_bytes(other[15 * c : 15 * c + width], "big")
        y1, y2 = (int.from_bytes(known[x][lo:hi], "big") for x in (1, 2))
        # f through (0, y0), (1, y1), (2, y2) evaluated at 3: f(3) = y0 - 3 y1 + 3 y2
        forged[3] += ((y0 - 3 * y1 + 3 * y2) % PRIME).to_bytes(ELEMENT_BYTES, "big")
    assert combine_shares({**known, **forged}, 3, 32) == other


def test_a_tampered_share_gives_a_wrong_secret_or_an_error():
    secret = os.urandom(32)
    shares = split_secret(secret, 3, [1, 2, 3])
    tampered = dict(shares)
    tampered[2] = bytes([shares[2][0] ^ 1]) + shares[2][1:]
    try:
        assert combine_shares(tampered, 3, 32) != secret  # so shares need commitments (protocol.py)
    except ProtocolError:
        pass


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        split_secret(b"s", 2, [1, 1, 2])
    with pytest.raises(ValueError, match="threshold"):
        split_secret(b"s", 4, [1, 2, 3])
    with pytest.raises(ValueError, match="1..p-1"):
        split_secret(b"s", 2, [0, 1])
    shares = split_secret(b"secret", 2, [1, 2])
    with pytest.raises(ProtocolError, match="bytes"):
        combine_shares({1: shares[1], 2: shares[2][:-1]}, 2, 6)
