"""Key agreement, key derivation, authenticated encryption and commitments, all from `cryptography`.

* X25519 key pairs: one for pairwise masks, one for encrypting Shamir shares in transit.
* HKDF-SHA256 turns an X25519 shared secret (or a random seed) into a 256-bit key. Every use has its
  own ``info`` (protocol, purpose, session, node ids), so no key serves two purposes or two rounds.
* AES-256-GCM seals the shares; the associated data binds protocol, stage, session, round, sender
  and receiver, so a ciphertext moved to another pair, stage or round fails authentication.
* SHA-256 commitments over length-prefixed parts (salted by the caller when the input is guessable).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedpriv.secagg.errors import ProtocolError

PROTOCOL = b"fedpriv-secagg/v1"
KEY_BYTES = 32  # X25519 keys, derived keys, seeds and salts
NONCE_BYTES = 12  # AES-GCM nonce
TAG_BYTES = 16  # AES-GCM tag
DIGEST_BYTES = 32  # SHA-256
ID_BYTES = 8  # node ids are unsigned 64-bit (Flower's node ids use the full range)


@dataclass(frozen=True)
class KeyPair:
    private: bytes
    public: bytes


def generate_keypair() -> KeyPair:
    private = X25519PrivateKey.generate()
    return KeyPair(private.private_bytes_raw(), private.public_key().public_bytes_raw())


def frame(*parts: bytes) -> bytes:
    """Unambiguous concatenation: every part prefixed with its 4-byte length."""
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def encode_id(node_id: int) -> bytes:
    return int(node_id).to_bytes(ID_BYTES, "big", signed=False)


def encode_ids(node_ids: Iterable[int]) -> bytes:
    return b"".join(encode_id(n) for n in node_ids)


def decode_ids(blob: bytes) -> list[int]:
    if len(blob) % ID_BYTES:
        raise ProtocolError(f"a node-id list of {len(blob)} bytes is not a multiple of {ID_BYTES}")
    return [int.from_bytes(blob[i : i + ID_BYTES], "big") for i in range(0, len(blob), ID_BYTES)]


def hkdf(secret: bytes, *, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(secret)


def pair_info(purpose: bytes, session: bytes, a: int, b: int) -> bytes:
    """HKDF info for a key two nodes share: the same whichever of them derives it."""
    low, high = sorted((a, b))
    return frame(PROTOCOL, purpose, session, encode_id(low), encode_id(high))


def load_private(private: bytes | X25519PrivateKey) -> X25519PrivateKey:
    """A private key object; load it once when agreeing with many peers (loading costs an exchange)."""
    return private if isinstance(private, X25519PrivateKey) else X25519PrivateKey.from_private_bytes(private)


def agree(private: bytes | X25519PrivateKey, peer_public: bytes, *, salt: bytes, info: bytes) -> bytes:
    """X25519 then HKDF-SHA256: a 256-bit key both ends derive. Raises ProtocolError on a peer key
    that yields no shared secret (a low-order point)."""
    if len(peer_public) != KEY_BYTES:
        raise ProtocolError(f"a public key must be {KEY_BYTES} bytes, got {len(peer_public)}")
    try:
        shared = load_private(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        raise ProtocolError("a peer public key gives no X25519 shared secret (low-order point)") from None
    return hkdf(shared, salt=salt, info=info)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM: nonce ‖ ciphertext ‖ tag. A random nonce is safe: each key seals one message."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise ProtocolError("a sealed message is shorter than its nonce and tag")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
    except InvalidTag:
        raise ProtocolError("a sealed message fails authentication (tampered, replayed or misdirected)") from None


def sealed_size(plaintext_size: int) -> int:
    return NONCE_BYTES + plaintext_size + TAG_BYTES


def commit(*parts: bytes) -> bytes:
    return hashlib.sha256(frame(PROTOCOL, b"commitment", *parts)).digest()


def pack(items: Sequence[bytes], width: int) -> bytes:
    """Fixed-width items concatenated (keys, shares, commitments travel this way)."""
    for item in items:
        if len(item) != width:
            raise ValueError(f"item of {len(item)} bytes in a list of {width}-byte items")
    return b"".join(items)


def unpack(blob: bytes, width: int, count: int, what: str) -> list[bytes]:
    if len(blob) != width * count:
        raise ProtocolError(f"{what}: expected {count} items of {width} bytes, got {len(blob)} bytes")
    return [blob[i : i + width] for i in range(0, len(blob), width)]
