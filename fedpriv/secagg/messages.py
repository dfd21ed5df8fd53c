"""The wire schema of fedpriv's SecAgg+: one typed payload per stage and direction.

Every payload converts to and from a flat ``dict`` of Flower ConfigRecord values (int, float, str,
bytes) with ``to_fields`` / ``from_fields``; ``from_fields`` rejects a missing field, a wrong type or
a wrong length with a :class:`ProtocolError` naming the field. Node-id lists travel as 8 bytes per
id (Flower node ids use all 64 bits, more than a signed ConfigRecord int holds); keys, shares and
commitments as fixed-width concatenations. No Flower import here: the Message plumbing maps these
dicts onto records.

Stages (server request → client reply):

1. ``setup``: round parameters → two public keys (advertise keys);
2. ``share-keys``: the neighbours' public keys → encrypted shares for each neighbour + commitments;
3. ``masked-input``: the shares addressed to this node → its masked, quantized, weighted update;
4. ``unmask``: who survived and who dropped → self-mask shares of survivors, mask-key shares of
   dropouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedpriv.secagg.crypto import KEY_BYTES, decode_ids, encode_ids, pack, unpack
from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.protocol import CIPHERTEXT_BYTES, COMMITMENT_BYTES, REVEALED_BYTES, SESSION_BYTES
from fedpriv.secagg.quantization import QuantizationSpec

SETUP, SHARE_KEYS, MASKED_INPUT, UNMASK = "setup", "share-keys", "masked-input", "unmask"
STAGES = (SETUP, SHARE_KEYS, MASKED_INPUT, UNMASK)

Fields = dict[str, Any]


def read(fields: Mapping[str, Any], key: str, kind: type) -> Any:
    """``fields[key]`` if it is a ``kind`` (an int is accepted as a float; a bool is never a number)."""
    if key not in fields:
        raise ProtocolError(f"field {key!r} is missing")
    value = fields[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError(f"field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def read_ids(fields: Mapping[str, Any], key: str) -> list[int]:
    ids = decode_ids(read(fields, key, bytes))
    if len(set(ids)) != len(ids):
        raise ProtocolError(f"field {key!r} lists a node twice")
    return ids


def read_keyed(fields: Mapping[str, Any], ids_key: str, blob_key: str, width: int) -> dict[int, bytes]:
    ids = read_ids(fields, ids_key)
    items = unpack(read(fields, blob_key, bytes), width, len(ids), blob_key)
    return dict(zip(ids, items, strict=True))


def keyed_fields(items: Mapping[int, bytes], ids_key: str, blob_key: str, width: int) -> Fields:
    ids = sorted(items)
    return {ids_key: encode_ids(ids), blob_key: pack([items[i] for i in ids], width)}


def fields_size(fields: Mapping[str, Any]) -> int:
    """Approximate payload bytes: names plus values (8 per number)."""
    total = 0
    for key, value in fields.items():
        total += len(key)
        if isinstance(value, bytes):
            total += len(value)
        elif isinstance(value, str):
            total += len(value.encode())
        else:
            total += 8
    return total


@dataclass(frozen=True)
class Header:
    """Every payload names its stage, session and round; a receiver checks all three."""

    stage: str
    session: bytes
    server_round: int

    def to_fields(self) -> Fields:
        return {"secagg-stage": self.stage, "secagg-session": self.session, "secagg-round": self.server_round}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], stage: str) -> Header:
        got = read(fields, "secagg-stage", str)
        if got != stage:
            raise ProtocolError(f"expected a {stage!r} message, got {got!r}")
        session = read(fields, "secagg-session", bytes)
        if len(session) != SESSION_BYTES:
            raise ProtocolError(f"a session id must be {SESSION_BYTES} bytes, got {len(session)}")
        return cls(stage, session, read(fields, "secagg-round", int))

    def check(self, session: bytes, server_round: int) -> None:
        """Raise unless this message belongs to the given session and round (replays fail here)."""
        if self.server_round != server_round:
            raise ProtocolError(f"message for round {self.server_round}, this is round {server_round}")
        if self.session != session:
            raise ProtocolError("message from another secure-aggregation session (stale or replayed)")


@dataclass(frozen=True)
class SetupRequest:
    header: Header
    participants: tuple[int, ...]
    graph_seed: bytes
    degree: int
    threshold: int
    vector_length: int  # d: the client sends d + 1 values (the weight last)
    quantization: QuantizationSpec

    def to_fields(self) -> Fields:
        q = self.quantization
        return {
            **self.header.to_fields(),
            "participants": encode_ids(self.participants),
            "graph-seed": self.graph_seed,
            "degree": self.degree,
            "threshold": self.threshold,
            "vector-length": self.vector_length,
            "clip-range": float(q.clip_range),
            "value-bits": q.value_bits,
            "modulus-bits": q.modulus_bits,
            "max-weight": q.max_weight,
            "rounding": q.rounding,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> SetupRequest:
        try:
            spec = QuantizationSpec(
                read(fields, "clip-range", float),
                read(fields, "value-bits", int),
                read(fields, "modulus-bits", int),
                read(fields, "max-weight", int),
                read(fields, "rounding", str),
            )
        except ValueError as err:
            raise ProtocolError(f"quantization: {err}") from None
        seed = read(fields, "graph-seed", bytes)
        if len(seed) != KEY_BYTES:
            raise ProtocolError(f"graph seed must be {KEY_BYTES} bytes, got {len(seed)}")
        return cls(
            Header.from_fields(fields, SETUP),
            tuple(read_ids(fields, "participants")),
            seed,
            read(fields, "degree", int),
            read(fields, "threshold", int),
            read(fields, "vector-length", int),
            spec,
        )


@dataclass(frozen=True)
class AdvertiseReply:
    header: Header
    mask_public_key: bytes
    encryption_public_key: bytes

    def to_fields(self) -> Fields:
        return {**self.header.to_fields(), "mask-public-key": self.mask_public_key, "encryption-public-key": self.encryption_public_key}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> AdvertiseReply:
        keys = [read(fields, k, bytes) for k in ("mask-public-key", "encryption-public-key")]
        if any(len(k) != KEY_BYTES for k in keys):
            raise ProtocolError(f"public keys must be {KEY_BYTES} bytes")
        if keys[0] == keys[1]:
            raise ProtocolError("the mask and encryption public keys must differ")
        return cls(Header.from_fields(fields, SETUP), *keys)


@dataclass(frozen=True)
class ShareKeysRequest:
    header: Header
    public_keys: dict[int, tuple[bytes, bytes]]  # neighbour → (mask public key, encryption public key)

    def to_fields(self) -> Fields:
        ids = sorted(self.public_keys)
        return {
            **self.header.to_fields(),
            "neighbours": encode_ids(ids),
            "mask-public-keys": pack([self.public_keys[i][0] for i in ids], KEY_BYTES),
            "encryption-public-keys": pack([self.public_keys[i][1] for i in ids], KEY_BYTES),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ShareKeysRequest:
        masks = read_keyed(fields, "neighbours", "mask-public-keys", KEY_BYTES)
        encs = read_keyed(fields, "neighbours", "encryption-public-keys", KEY_BYTES)
        return cls(Header.from_fields(fields, SHARE_KEYS), {i: (masks[i], encs[i]) for i in masks})


@dataclass(frozen=True)
class ShareKeysReply:
    header: Header
    ciphertexts: dict[int, bytes]  # destination neighbour → sealed shares
    commitments: dict[int, tuple[bytes, bytes]]  # holder (neighbours and the dealer) → (self-mask, mask-key)

    def to_fields(self) -> Fields:
        holders = sorted(self.commitments)
        return {
            **self.header.to_fields(),
            **keyed_fields(self.ciphertexts, "destinations", "ciphertexts", CIPHERTEXT_BYTES),
            "holders": encode_ids(holders),
            "self-mask-commitments": pack([self.commitments[h][0] for h in holders], COMMITMENT_BYTES),
            "mask-key-commitments": pack([self.commitments[h][1] for h in holders], COMMITMENT_BYTES),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ShareKeysReply:
        selfs = read_keyed(fields, "holders", "self-mask-commitments", COMMITMENT_BYTES)
        keys = read_keyed(fields, "holders", "mask-key-commitments", COMMITMENT_BYTES)
        return cls(
            Header.from_fields(fields, SHARE_KEYS),
            read_keyed(fields, "destinations", "ciphertexts", CIPHERTEXT_BYTES),
            {h: (selfs[h], keys[h]) for h in selfs},
        )


@dataclass(frozen=True)
class MaskedInputRequest:
    header: Header
    ciphertexts: dict[int, bytes]  # source neighbour → its sealed shares for this node

    def to_fields(self) -> Fields:
        return {**self.header.to_fields(), **keyed_fields(self.ciphertexts, "sources", "ciphertexts", CIPHERTEXT_BYTES)}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> MaskedInputRequest:
        return cls(Header.from_fields(fields, MASKED_INPUT), read_keyed(fields, "sources", "ciphertexts", CIPHERTEXT_BYTES))


@dataclass(frozen=True)
class MaskedInputReply:
    header: Header
    masked_vector: bytes  # d + 1 entries of k/8 bytes (see protocol.pack_vector)

    def to_fields(self) -> Fields:
        return {**self.header.to_fields(), "masked-vector": self.masked_vector}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> MaskedInputReply:
        return cls(Header.from_fields(fields, MASKED_INPUT), read(fields, "masked-vector", bytes))


@dataclass(frozen=True)
class UnmaskRequest:
    header: Header
    survivors: tuple[int, ...]  # neighbours (and the node itself) whose masked input is in the sum
    dropped: tuple[int, ...]  # neighbours that shared keys but sent no masked input

    def to_fields(self) -> Fields:
        return {**self.header.to_fields(), "survivors": encode_ids(sorted(self.survivors)), "dropped": encode_ids(sorted(self.dropped))}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> UnmaskRequest:
        return cls(Header.from_fields(fields, UNMASK), tuple(read_ids(fields, "survivors")), tuple(read_ids(fields, "dropped")))


@dataclass(frozen=True)
class UnmaskReply:
    header: Header
    self_mask_shares: dict[int, bytes]  # survivor → share ‖ salt of its self-mask seed
    mask_key_shares: dict[int, bytes]  # dropout → share ‖ salt of its mask private key

    def to_fields(self) -> Fields:
        return {
            **self.header.to_fields(),
            **keyed_fields(self.self_mask_shares, "self-mask-owners", "self-mask-shares", REVEALED_BYTES),
            **keyed_fields(self.mask_key_shares, "mask-key-owners", "mask-key-shares", REVEALED_BYTES),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> UnmaskReply:
        return cls(
            Header.from_fields(fields, UNMASK),
            read_keyed(fields, "self-mask-owners", "self-mask-shares", REVEALED_BYTES),
            read_keyed(fields, "mask-key-owners", "mask-key-shares", REVEALED_BYTES),
        )
