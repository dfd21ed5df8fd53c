"""The rules both sides of SecAgg+ apply: key derivations, associated data, commitments, mask signs
and the packing of masked vectors. Client (``client/secagg.py``) and server (``strategies/secagg.py``)
import these so the two can never disagree on a byte.

Per round and node i:
* two fresh X25519 key pairs: ``mask`` (pairwise masks) and ``encryption`` (shares in transit);
* a fresh 32-byte self-mask seed b_i;
* pairwise mask key with neighbour j: HKDF(X25519(mask_i, mask_j), salt = session, info =
  protocol ‖ "pairwise-mask" ‖ session ‖ min(i, j) ‖ max(i, j)); the node with the smaller id adds
  the expanded mask, the other subtracts it, so each pair cancels in the sum;
* self-mask key: HKDF(b_i, salt = session, info = protocol ‖ "self-mask" ‖ session ‖ i);
* share-encryption key with j: as the pairwise key, from the encryption pair, purpose
  "share-encryption"; AES-GCM associated data = protocol ‖ "share-keys" ‖ session ‖ round ‖ sender
  ‖ receiver;
* a share travels with a fresh 32-byte salt; the dealer commits to every holder's share,
  SHA-256(kind ‖ session ‖ round ‖ dealer ‖ holder ‖ salt ‖ share), so the server can check a share
  revealed at unmask and attribute a bad one to its holder. The salt keeps the commitment hiding.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedpriv.secagg.crypto import (
    DIGEST_BYTES,
    KEY_BYTES,
    PROTOCOL,
    agree,
    commit,
    encode_id,
    frame,
    hkdf,
    pair_info,
    sealed_size,
)
from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.shamir import share_size

SESSION_BYTES = 16
SECRET_BYTES = 32  # self-mask seeds and X25519 private keys
SHARE_BYTES = share_size(SECRET_BYTES)  # 48
REVEALED_BYTES = SHARE_BYTES + KEY_BYTES  # share ‖ salt, as revealed at unmask
SHARE_PLAINTEXT_BYTES = 2 * REVEALED_BYTES  # self-mask share ‖ salt ‖ mask-key share ‖ salt
CIPHERTEXT_BYTES = sealed_size(SHARE_PLAINTEXT_BYTES)
COMMITMENT_BYTES = DIGEST_BYTES

SELF_MASK = b"self-mask"  # the two secrets a node shares
MASK_KEY = b"mask-key"


def round_bytes(server_round: int) -> bytes:
    return encode_id(server_round)


def pairwise_mask_key(mask_private: bytes | X25519PrivateKey, peer_mask_public: bytes, session: bytes, me: int, peer: int) -> bytes:
    return agree(mask_private, peer_mask_public, salt=session, info=pair_info(b"pairwise-mask", session, me, peer))


def share_encryption_key(enc_private: bytes | X25519PrivateKey, peer_enc_public: bytes, session: bytes, me: int, peer: int) -> bytes:
    return agree(enc_private, peer_enc_public, salt=session, info=pair_info(b"share-encryption", session, me, peer))


def self_mask_key(seed: bytes, session: bytes, node_id: int) -> bytes:
    return hkdf(seed, salt=session, info=frame(PROTOCOL, SELF_MASK, session, encode_id(node_id)))


def share_associated_data(session: bytes, server_round: int, sender: int, receiver: int) -> bytes:
    return frame(PROTOCOL, b"share-keys", session, round_bytes(server_round), encode_id(sender), encode_id(receiver))


def share_commitment(kind: bytes, session: bytes, server_round: int, dealer: int, holder: int, revealed: bytes) -> bytes:
    """Commitment to one holder's share; ``revealed`` is share ‖ salt."""
    share, salt = revealed[:SHARE_BYTES], revealed[SHARE_BYTES:]
    return commit(kind, session, round_bytes(server_round), encode_id(dealer), encode_id(holder), salt, share)


def pairwise_sign(me: int, peer: int) -> int:
    """+1: ``me`` adds the pair's mask; −1: it subtracts it."""
    return 1 if me < peer else -1


def pack_vector(vector: np.ndarray, modulus_bits: int) -> bytes:
    """uint64 entries < 2^k as k/8 little-endian bytes each."""
    width = modulus_bits // 8
    words = np.ascontiguousarray(vector, dtype="<u8")
    return words.view(np.uint8).reshape(-1, 8)[:, :width].tobytes()


def unpack_vector(blob: bytes, length: int, modulus_bits: int) -> np.ndarray:
    width = modulus_bits // 8
    if len(blob) != length * width:
        raise ProtocolError(f"a masked vector must be {length * width} bytes ({length} × {width}), got {len(blob)}")
    words = np.zeros((length, 8), dtype=np.uint8)
    words[:, :width] = np.frombuffer(blob, dtype=np.uint8).reshape(length, width)
    return words.view("<u8").reshape(length).astype(np.uint64, copy=False)
