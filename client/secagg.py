"""The device's side of SecAgg+: one handler per stage, no I/O, state kept between messages.

Handlers, in order (see ``fedpriv.secagg`` for the protocol):

1. ``setup``: check the round parameters (this node is a participant; degree and threshold form a
   valid SecAgg+ configuration with a strict-majority threshold; the grid cannot wrap) and answer
   with two fresh X25519 public keys;
2. ``share_keys``: check the neighbours the server lists against the graph this node recomputes
   from the public seed, Shamir-share the self-mask seed and the mask private key among those
   neighbours and itself, and seal each neighbour's shares with AES-GCM (associated data: session,
   round, sender, receiver), committing to every share; the encryption private key is then
   replaced by the per-neighbour AES keys, which open the neighbours' shares at the next stage;
3. ``masked_input``: open the shares addressed to it (any that fails authentication, or comes from
   a node that is not a neighbour that shared keys, refuses the whole stage), quantize the update
   with its weight, add the self mask and the pairwise masks, and send the result; the mask key,
   the seed and the AES keys are then deleted, so only the neighbours' shares remain;
4. ``unmask``: for each listed survivor reveal its self-mask share, for each listed dropout its
   mask-key share; a node named in both lists, a list with fewer survivors than the threshold, or
   a second unmask request is refused, so the server never gets both secrets of a node from here.

Every refusal raises :class:`ProtocolError` and leaves the state unchanged; a message for another
session or round (a replay) is refused, and a setup for a round before the last one this node
accepted is refused. The state round-trips through ``export`` / ``restore`` as ConfigRecord-ready
values, because Flower's ClientApp keeps nothing between messages except ``context.state``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedpriv.secagg.crypto import (
    KEY_BYTES,
    decode_ids,
    encode_ids,
    generate_keypair,
    load_private,
    open_sealed,
    pack,
    seal,
    unpack,
)
from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.graph import CommunicationGraph, check_graph_parameters
from fedpriv.secagg.masks import expand_mask, modulus_mask
from fedpriv.secagg.messages import (
    MASKED_INPUT,
    SETUP,
    SHARE_KEYS,
    UNMASK,
    AdvertiseReply,
    Fields,
    Header,
    MaskedInputReply,
    MaskedInputRequest,
    SetupRequest,
    ShareKeysReply,
    ShareKeysRequest,
    UnmaskReply,
    UnmaskRequest,
)
from fedpriv.secagg.protocol import (
    MASK_KEY,
    REVEALED_BYTES,
    SECRET_BYTES,
    SELF_MASK,
    SHARE_PLAINTEXT_BYTES,
    pack_vector,
    pairwise_mask_key,
    pairwise_sign,
    self_mask_key,
    share_associated_data,
    share_commitment,
    share_encryption_key,
)
from fedpriv.secagg.quantization import num_clipped, quantize
from fedpriv.secagg.shamir import split_secret

IDLE = "idle"
_BUNDLE = SHARE_PLAINTEXT_BYTES  # self-mask share ‖ salt ‖ mask-key share ‖ salt
_PAIR = 2 * KEY_BYTES  # mask public key ‖ encryption public key
_KEYED = (("neighbour_keys", _PAIR), ("share_keys", KEY_BYTES), ("held", _BUNDLE))


@dataclass
class ClientState:
    """What a node keeps between the stages of one session (all of it stays on the device)."""

    stage: str = IDLE  # the last stage completed in ``session``
    session: bytes = b""
    server_round: int = 0
    last_round: int = 0  # highest round whose setup this node accepted
    setup: Fields = field(default_factory=dict)  # the setup request's fields
    mask_private: bytes = b""
    mask_public: bytes = b""
    encryption_private: bytes = b""
    encryption_public: bytes = b""
    self_mask_seed: bytes = b""
    neighbour_keys: dict[int, bytes] = field(default_factory=dict)  # neighbour → mask pk ‖ encryption pk
    share_keys: dict[int, bytes] = field(default_factory=dict)  # neighbour → AES key of the shares in transit
    held: dict[int, bytes] = field(default_factory=dict)  # dealer → its shares for this node (own included)

    _SCALARS = ("stage", "session", "server_round", "last_round", "mask_private", "mask_public",
                "encryption_private", "encryption_public", "self_mask_seed")

    def to_fields(self) -> Fields:
        fields: Fields = {name.replace("_", "-"): getattr(self, name) for name in self._SCALARS}
        fields.update({f"setup/{k}": v for k, v in self.setup.items()})
        for name, width in _KEYED:
            items: dict[int, bytes] = getattr(self, name)
            ids = sorted(items)
            fields[f"{name.replace('_', '-')}/ids"] = encode_ids(ids)
            fields[f"{name.replace('_', '-')}/values"] = pack([items[i] for i in ids], width)
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ClientState:
        state = cls(**{name: fields[name.replace("_", "-")] for name in cls._SCALARS})
        state.setup = {k.removeprefix("setup/"): v for k, v in fields.items() if k.startswith("setup/")}
        for name, width in _KEYED:
            ids = decode_ids(fields[f"{name.replace('_', '-')}/ids"])
            values = unpack(fields[f"{name.replace('_', '-')}/values"], width, len(ids), name)
            setattr(state, name, dict(zip(ids, values, strict=True)))
        return state


class SecAggClient:
    """One node's SecAgg+ state machine. ``rng`` drives stochastic rounding only (not a secret)."""

    def __init__(self, node_id: int, state: ClientState | None = None, rng: np.random.Generator | None = None) -> None:
        self.node_id = int(node_id)
        self.state = state or ClientState()
        self._rng = rng or np.random.default_rng()
        self.clipped = 0  # coordinates of the last masked update outside the clip range (for local logs only)

    @classmethod
    def restore(cls, node_id: int, fields: Mapping[str, Any], rng: np.random.Generator | None = None) -> SecAggClient:
        """The client from its saved state (empty fields: a fresh one). Unreadable state is a
        ProtocolError: the node then sits the round out rather than guess."""
        try:
            state = ClientState.from_fields(fields) if fields else None
        except (KeyError, TypeError, ValueError, ProtocolError) as err:
            raise ProtocolError(f"the saved secure-aggregation state is unreadable ({type(err).__name__}: {err})") from None
        return cls(node_id, state, rng)

    def export(self) -> Fields:
        return self.state.to_fields()

    def handle(self, fields: Mapping[str, Any], masked_input: Callable[[], tuple[np.ndarray, int]] | None = None) -> Fields:
        """Answer one request given as fields (the stage named in them picks the handler).
        ``masked_input`` gives (update, weight) when the masked-input stage asks for them."""
        stage = fields.get("secagg-stage")
        if stage == SETUP:
            return self.setup(SetupRequest.from_fields(fields)).to_fields()
        if stage == SHARE_KEYS:
            return self.share_keys(ShareKeysRequest.from_fields(fields)).to_fields()
        if stage == MASKED_INPUT:
            if masked_input is None:
                raise ValueError("the masked-input stage needs the update and its weight")
            request = MaskedInputRequest.from_fields(fields)
            self._expect(request.header, MASKED_INPUT, SHARE_KEYS)  # refuse before computing the update
            return self.masked_input(request, *masked_input()).to_fields()
        if stage == UNMASK:
            return self.unmask(UnmaskRequest.from_fields(fields)).to_fields()
        raise ProtocolError(f"unknown secure-aggregation stage {stage!r}")

    # ------------------------------------------------------------------------------------------

    def _setup_request(self) -> SetupRequest:
        return SetupRequest.from_fields(self.state.setup)

    def _graph(self, request: SetupRequest) -> CommunicationGraph:
        return CommunicationGraph.build(request.participants, request.graph_seed, request.degree)

    def _expect(self, header: Header, stage: str, previous: str) -> None:
        if header.stage != stage:
            raise ProtocolError(f"expected a {stage!r} message, got {header.stage!r}")
        if self.state.stage == IDLE:
            raise ProtocolError(f"{stage} request without a setup")
        header.check(self.state.session, self.state.server_round)
        if self.state.stage != previous:
            raise ProtocolError(f"{stage} request out of order: this node's last stage was {self.state.stage}")

    # ------------------------------------------------------------------------------------------
    # 1. setup: advertise keys

    def setup(self, request: SetupRequest) -> AdvertiseReply:
        h = request.header
        if h.stage != SETUP:
            raise ProtocolError(f"expected a setup message, got {h.stage!r}")
        if h.server_round < self.state.last_round:
            raise ProtocolError(f"setup for round {h.server_round}, but this node already took part in round {self.state.last_round}")
        if h.session == self.state.session and self.state.stage != IDLE:
            raise ProtocolError("setup repeated inside a running session")
        if self.node_id not in request.participants:
            raise ProtocolError(f"node {self.node_id} is not among this round's participants")
        n = len(request.participants)
        try:
            check_graph_parameters(n, request.degree, request.threshold)
            request.quantization.check_capacity(n)
        except ValueError as err:
            raise ProtocolError(f"unsafe or invalid round parameters: {err}") from None
        if request.vector_length < 1:
            raise ProtocolError(f"vector length must be positive, got {request.vector_length}")
        mask, encryption = generate_keypair(), generate_keypair()
        self.state = ClientState(
            stage=SETUP,
            session=h.session,
            server_round=h.server_round,
            last_round=h.server_round,
            setup=request.to_fields(),
            mask_private=mask.private,
            mask_public=mask.public,
            encryption_private=encryption.private,
            encryption_public=encryption.public,
        )
        return AdvertiseReply(h, mask.public, encryption.public)

    # ------------------------------------------------------------------------------------------
    # 2. share keys

    def share_keys(self, request: ShareKeysRequest) -> ShareKeysReply:
        self._expect(request.header, SHARE_KEYS, SETUP)
        setup = self._setup_request()
        graph, me, st = self._graph(setup), self.node_id, self.state
        neighbours = set(request.public_keys)
        outsiders = sorted(neighbours - graph.neighbours(me))
        if outsiders:
            raise ProtocolError(f"keys listed for node {outsiders[0]}, which is not a neighbour of node {me} in this round's graph")
        if len(neighbours) + 1 < setup.threshold:
            raise ProtocolError(f"{len(neighbours)} neighbours with keys cannot hold {setup.threshold} shares with this node")
        keys = [st.mask_public, st.encryption_public] + [k for pair in request.public_keys.values() for k in pair]
        if len(set(keys)) != len(keys):
            raise ProtocolError("two participants advertise the same public key")
        seed = os.urandom(SECRET_BYTES)
        holders = sorted(neighbours | {me})
        xs = {holder: graph.x_coordinate(holder) for holder in holders}
        self_shares = split_secret(seed, setup.threshold, list(xs.values()))
        key_shares = split_secret(st.mask_private, setup.threshold, list(xs.values()))
        ciphertexts: dict[int, bytes] = {}
        commitments: dict[int, tuple[bytes, bytes]] = {}
        held: dict[int, bytes] = {}
        transit: dict[int, bytes] = {}
        h = request.header
        encryption_private = load_private(st.encryption_private)
        for holder in holders:
            self_part = self_shares[xs[holder]] + os.urandom(KEY_BYTES)
            key_part = key_shares[xs[holder]] + os.urandom(KEY_BYTES)
            commitments[holder] = (
                share_commitment(SELF_MASK, h.session, h.server_round, me, holder, self_part),
                share_commitment(MASK_KEY, h.session, h.server_round, me, holder, key_part),
            )
            if holder == me:
                held[me] = self_part + key_part
                continue
            transit[holder] = share_encryption_key(encryption_private, request.public_keys[holder][1], h.session, me, holder)
            ciphertexts[holder] = seal(transit[holder], self_part + key_part, share_associated_data(h.session, h.server_round, me, holder))
        st.self_mask_seed = seed
        st.share_keys = transit  # the same keys open the neighbours' shares at the next stage
        st.encryption_private = b""
        st.neighbour_keys = {j: mask_pk + enc_pk for j, (mask_pk, enc_pk) in request.public_keys.items()}
        st.held = held
        st.stage = SHARE_KEYS
        return ShareKeysReply(h, ciphertexts, commitments)

    # ------------------------------------------------------------------------------------------
    # 3. masked input

    def masked_input(self, request: MaskedInputRequest, update: np.ndarray, weight: int) -> MaskedInputReply:
        """Mask (w·q(update), w). ``update`` is the flat float vector of ``vector-length`` values."""
        self._expect(request.header, MASKED_INPUT, SHARE_KEYS)
        setup, st, me, h = self._setup_request(), self.state, self.node_id, request.header
        sources = set(request.ciphertexts)
        strangers = sorted(sources - set(st.neighbour_keys))
        if strangers:
            raise ProtocolError(f"shares from node {strangers[0]}, which is not a neighbour that received this node's keys")
        if len(sources) + 1 < setup.threshold:
            raise ProtocolError(f"only {len(sources)} neighbours shared keys; the threshold {setup.threshold} cannot be met")
        values = np.asarray(update, dtype=np.float64).ravel()
        if values.size != setup.vector_length:
            raise ValueError(f"the update has {values.size} values, the round expects {setup.vector_length}")
        held = dict(st.held)
        for source in sorted(sources):
            try:
                bundle = open_sealed(st.share_keys[source], request.ciphertexts[source], share_associated_data(h.session, h.server_round, source, me))
            except ProtocolError as err:
                raise ProtocolError(f"shares from node {source}: {err.reason}") from None
            if len(bundle) != _BUNDLE:
                raise ProtocolError(f"shares from node {source} have {len(bundle)} bytes, expected {_BUNDLE}")
            held[source] = bundle
        spec = setup.quantization
        vector = quantize(values, weight, spec, self._rng)
        self.clipped = num_clipped(values, spec)
        length = vector.size
        vector += expand_mask(self_mask_key(st.self_mask_seed, h.session, me), length, spec.modulus_bits)
        mask_private = load_private(st.mask_private)
        for source in sorted(sources):
            pair_key = pairwise_mask_key(mask_private, st.neighbour_keys[source][:KEY_BYTES], h.session, me, source)
            mask = expand_mask(pair_key, length, spec.modulus_bits)
            if pairwise_sign(me, source) > 0:
                vector += mask
            else:
                vector -= mask
        vector &= modulus_mask(spec.modulus_bits)
        # Only the neighbours' shares are needed from here on; the secrets themselves go.
        st.held = held
        st.self_mask_seed = st.mask_private = b""
        st.share_keys = {}
        st.stage = MASKED_INPUT
        return MaskedInputReply(h, pack_vector(vector, spec.modulus_bits))

    # ------------------------------------------------------------------------------------------
    # 4. unmask

    def unmask(self, request: UnmaskRequest) -> UnmaskReply:
        self._expect(request.header, UNMASK, MASKED_INPUT)
        setup, st, me = self._setup_request(), self.state, self.node_id
        survivors, dropped = set(request.survivors), set(request.dropped)
        both = sorted(survivors & dropped)
        if both:
            raise ProtocolError(f"node {both[0]} is listed both as survivor and as dropout; refusing to reveal both of its secrets")
        if me not in survivors:
            raise ProtocolError(f"node {me} sent its masked input but is not listed as a survivor")
        unknown = sorted((survivors | dropped) - set(st.held))
        if unknown:
            raise ProtocolError(f"shares asked for node {unknown[0]}, of which this node holds none")
        if len(survivors) < setup.threshold:
            raise ProtocolError(f"{len(survivors)} survivors among this node's neighbours, below the threshold {setup.threshold}")
        reply = UnmaskReply(
            request.header,
            {s: st.held[s][:REVEALED_BYTES] for s in survivors},
            {d: st.held[d][REVEALED_BYTES:] for d in dropped},
        )
        st.held = {}
        st.stage = UNMASK
        return reply
