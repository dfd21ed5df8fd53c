"""X25519 + HKDF key agreement, AES-GCM sealing with associated data, commitments, AES-CTR masks."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fedpriv.secagg.crypto import agree, commit, decode_ids, encode_ids, generate_keypair, open_sealed, pair_info, seal
from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.masks import expand_mask
from fedpriv.secagg.protocol import share_associated_data

SESSION = bytes(range(16))


def test_both_ends_derive_the_same_key_and_purposes_are_separated():
    a, b = generate_keypair(), generate_keypair()
    info = pair_info(b"pairwise-mask", SESSION, 7, 3)
    k_ab = agree(a.private, b.public, salt=SESSION, info=info)
    assert k_ab == agree(b.private, a.public, salt=SESSION, info=pair_info(b"pairwise-mask", SESSION, 3, 7))
    assert len(k_ab) == 32
    assert k_ab != agree(a.private, b.public, salt=SESSION, info=pair_info(b"share-encryption", SESSION, 7, 3))
    other_session = bytes(16)
    assert k_ab != agree(a.private, b.public, salt=other_session, info=pair_info(b"pairwise-mask", other_session, 7, 3))


def test_low_order_public_key_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="low-order"):
        agree(generate_keypair().private, bytes(32), salt=SESSION, info=b"x")
    with pytest.raises(ProtocolError, match="32 bytes"):
        agree(generate_keypair().private, bytes(31), salt=SESSION, info=b"x")


def test_sealed_shares_fail_when_tampered_replayed_or_misdirected():
    key = os.urandom(32)
    ad = share_associated_data(SESSION, 4, sender=11, receiver=12)
    sealed = seal(key, b"share bytes", ad)
    assert open_sealed(key, sealed, ad) == b"share bytes"
    for i in range(len(sealed)):  # any flipped byte (nonce, body, tag)
        broken = bytearray(sealed)
        broken[i] ^= 0x01
        with pytest.raises(ProtocolError, match="authentication"):
            open_sealed(key, bytes(broken), ad)
    for wrong in (
        share_associated_data(SESSION, 3, 11, 12),  # earlier round
        share_associated_data(bytes(16), 4, 11, 12),  # another session
        share_associated_data(SESSION, 4, 13, 12),  # another sender
        share_associated_data(SESSION, 4, 11, 13),  # another receiver
    ):
        with pytest.raises(ProtocolError):
            open_sealed(key, sealed, wrong)


def test_node_ids_use_all_64_bits_and_commitments_bind_every_part():
    ids = [1, 2**63 + 5, 2**64 - 1]
    assert decode_ids(encode_ids(ids)) == ids
    with pytest.raises(ProtocolError):
        decode_ids(b"\x00" * 7)
    assert commit(b"ab", b"c") != commit(b"a", b"bc")  # length-prefixed, not plain concatenation


def test_mask_is_uniform_in_range_and_deterministic():
    key = os.urandom(32)
    mask = expand_mask(key, 200_000, 48)
    assert mask.dtype == np.uint64 and np.array_equal(mask, expand_mask(key, 200_000, 48))
    assert int(mask.max()) < 2**48
    assert abs(mask.astype(np.float64).mean() / 2**48 - 0.5) < 0.005
    top = (mask >> np.uint64(40)).astype(np.int64)  # the top byte: 256 equally likely values
    counts = np.bincount(top, minlength=256)
    chi2 = float((((counts - counts.mean()) ** 2) / counts.mean()).sum())
    assert chi2 < 400  # 255 degrees of freedom: mean 255, sd ~22.6
    small = expand_mask(key, 1000, 16)
    assert int(small.max()) < 2**16 and int(small.max()) > 2**15


def test_every_byte_and_bit_of_the_key_changes_the_mask():
    key = os.urandom(32)
    base = expand_mask(key, 64, 48)
    for byte in range(32):
        for bit in range(8):
            other = bytearray(key)
            other[byte] ^= 1 << bit
            changed = expand_mask(bytes(other), 64, 48)
            assert (changed != base).mean() > 0.9, (byte, bit)
    assert not np.array_equal(base, expand_mask(os.urandom(32), 64, 48))


def test_keys_with_the_same_32_bit_fold_give_different_masks():
    """Flower 1.41 seeds numpy RandomState with the XOR of the key's 4-byte words: permuting the
    words keeps that seed. The AES-256-CTR expansion uses the whole key."""
    key = os.urandom(32)
    swapped = key[4:8] + key[0:4] + key[8:]
    fold = lambda k: np.bitwise_xor.reduce(np.frombuffer(k, dtype="<u4"))  # noqa: E731
    assert fold(key) == fold(swapped)
    assert (expand_mask(key, 64, 48) != expand_mask(swapped, 64, 48)).mean() > 0.9


def test_mask_key_must_be_256_bits():
    with pytest.raises(ValueError, match="32 bytes"):
        expand_mask(os.urandom(16), 8, 48)
