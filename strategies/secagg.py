"""The server's side of SecAgg+: one object per round that only ever holds masked vectors and the sum.

``SecAggServer`` builds each stage's requests and validates each stage's replies; it does no I/O
(the strategy sends the requests as Flower messages and hands back ``(src_node_id, fields)``
pairs, ``src_node_id`` from the message metadata). A reply is rejected, and its node treated as
dropped from then on, when it is malformed, comes from a node not asked at this stage (outside the
round), repeats a node, names another stage, round or session (a replay), or contradicts an earlier
stage (shares for the wrong set of neighbours, a revealed share that fails its dealer's commitment).
Every rejection is kept in ``rejections`` with its reason.

Sets of nodes, as in Bell et al.: U0 advertised keys, U1 shared keys, U2 sent masked inputs (the
survivors), U3 revealed shares. After each of the first two stages nodes whose neighbourhood can
no longer meet the threshold are pruned (they leave before anyone masks against them). Before
asking for shares the server checks that every survivor and every node of D = U1 − U2 (shared keys,
then dropped) can be reconstructed from survivors' shares; if not, or if fewer than
``min_survivors`` survive, the round is aborted (:class:`SecAggAborted`) before any share is
revealed. Only the running sum of masked vectors is kept (never one client's vector), and
unmasking works on that sum: survivors' self masks and the pairwise masks between survivors and D
are removed, leaving Σ (w_i·q_i, w_i), which ``finish`` range-checks and dequantizes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from fedpriv.secagg.crypto import KEY_BYTES, load_private
from fedpriv.secagg.errors import ProtocolError, SecAggAborted
from fedpriv.secagg.graph import CommunicationGraph, check_graph_parameters, majority_threshold
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
    SECRET_BYTES,
    SELF_MASK,
    SESSION_BYTES,
    SHARE_BYTES,
    pairwise_mask_key,
    pairwise_sign,
    self_mask_key,
    share_commitment,
    unpack_vector,
)
from fedpriv.secagg.quantization import QuantizationSpec, dequantize_sum
from fedpriv.secagg.shamir import combine_shares

Reply = tuple[int, Mapping[str, Any]]  # (src node id from the message metadata, the reply's fields)
# Sends one stage's requests (node → fields) and returns the replies that came back in time.
Exchange = Callable[[str, dict[int, Fields]], Iterable[Reply]]
P = TypeVar("P")
FINISHED = "finished"
ABORTED = "aborted"


@dataclass(frozen=True)
class Rejection:
    stage: str
    node_id: int
    reason: str


@dataclass
class SecAggResult:
    """The unmasked aggregate of one round and how it was reached."""

    weighted_sum: np.ndarray  # Σ w_i x̂_i over the survivors, float64, length d
    total_weight: int  # Σ w_i
    participants: int  # sampled for the round
    survivors: list[int]  # whose masked inputs are in the sum
    dropouts_recovered: list[int]  # shared keys, then dropped: their pairwise masks removed from shares
    dropped_before_masking: list[int]  # left before sharing keys (nothing to recover)
    quantization: QuantizationSpec

    @property
    def sum_error_bound(self) -> float:
        return self.quantization.sum_error_bound(self.total_weight)

    def mean(self) -> np.ndarray:
        if self.total_weight <= 0:
            raise ValueError("the survivors' total weight is zero: no weighted mean")
        return self.weighted_sum / self.total_weight

    def metrics(self) -> dict[str, float | int]:
        return {
            "secagg-participants": self.participants,
            "secagg-survivors": len(self.survivors),
            "secagg-dropouts-recovered": len(self.dropouts_recovered),
            "secagg-dropped-before-masking": len(self.dropped_before_masking),
            **self.quantization.to_metrics(self.total_weight),
        }


@dataclass
class _Round:
    """What the server learned so far; none of it is a client's unmasked input."""

    public_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # U0: (mask pk, encryption pk)
    forward: dict[int, dict[int, bytes]] = field(default_factory=dict)  # destination → source → ciphertext
    commitments: dict[int, dict[int, tuple[bytes, bytes]]] = field(default_factory=dict)  # dealer → holder → pair
    shared: set[int] = field(default_factory=set)  # U1
    survivors: set[int] = field(default_factory=set)  # U2
    masked_sum: np.ndarray | None = None  # Σ masked vectors of U2, mod 2^k
    self_mask_shares: dict[int, dict[int, bytes]] = field(default_factory=dict)  # survivor → x → share
    mask_key_shares: dict[int, dict[int, bytes]] = field(default_factory=dict)  # dropout → x → share


class SecAggServer:
    """One round of SecAgg+ on the server. Call, in order: ``setup_requests``, ``receive_advertise``,
    ``share_keys_requests``, ``receive_share_keys``, ``masked_input_requests``,
    ``receive_masked_inputs``, ``unmask_requests``, ``receive_unmask``, ``finish``."""

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        server_round: int,
        participants: Sequence[int],
        vector_length: int,
        quantization: QuantizationSpec,
        *,
        degree: int | None = None,
        threshold: int | None = None,
        min_survivors: int = 2,
    ) -> None:
        if vector_length < 1:
            raise ValueError(f"vector length must be positive, got {vector_length}")
        if min_survivors < 2:
            raise ValueError(f"min_survivors must be at least 2 (one survivor's sum is its update), got {min_survivors}")
        self.server_round = int(server_round)
        self.session = os.urandom(SESSION_BYTES)
        self.graph = CommunicationGraph.build(participants, os.urandom(KEY_BYTES), degree)
        n = len(self.graph.participants)
        self.threshold = majority_threshold(self.graph.degree) if threshold is None else threshold
        check_graph_parameters(n, self.graph.degree, self.threshold)
        quantization.check_capacity(n)
        self.quantization = quantization
        self.vector_length = int(vector_length)
        self.min_survivors = min_survivors
        self.rejections: list[Rejection] = []
        # Who got through each stage (U0, U1, U2, U3), for the run record; kept after an abort.
        self.progress: dict[str, list[int]] = {}
        self.stage = SETUP  # the stage whose requests come next
        self.abort_reason: str | None = None
        self._asked: set[int] = set()
        self._r = _Round()

    def stages(self) -> tuple[tuple[str, Callable[[], Mapping[int, Any]], Callable[[Iterable[Reply]], None]], ...]:
        """(stage, its requests builder, its replies handler), in protocol order."""
        return (
            (SETUP, self.setup_requests, self.receive_advertise),
            (SHARE_KEYS, self.share_keys_requests, self.receive_share_keys),
            (MASKED_INPUT, self.masked_input_requests, self.receive_masked_inputs),
            (UNMASK, self.unmask_requests, self.receive_unmask),
        )

    def run(self, exchange: Exchange) -> SecAggResult:
        """All four stages through ``exchange`` (the caller's transport), then ``finish``."""
        for stage, requests, receive in self.stages():
            receive(exchange(stage, {node: request.to_fields() for node, request in requests().items()}))
        return self.finish()

    # ------------------------------------------------------------------------------------------
    # plumbing

    def _header(self, stage: str) -> Header:
        return Header(stage, self.session, self.server_round)

    def _begin(self, stage: str, nodes: Iterable[int]) -> None:
        if self.abort_reason is not None:
            raise SecAggAborted(f"round {self.server_round} was aborted: {self.abort_reason}")
        if self.stage != stage:
            raise RuntimeError(f"{stage} requests out of order (next stage: {self.stage})")
        self._asked = set(nodes)

    def _abort(self, reason: str) -> SecAggAborted:
        """Forget everything learned (the masked sum and any revealed share) and refuse to go on."""
        self.abort_reason = reason
        self.stage = ABORTED
        self._r = _Round()
        return SecAggAborted(f"round {self.server_round}: secure aggregation aborted, nothing released: {reason}")

    def _intake(self, stage: str, replies: Iterable[Reply], parse: Callable[[Mapping[str, Any]], P],
                check: Callable[[int, P], None]) -> dict[int, P]:
        """Valid replies of one stage by node; the rest recorded in ``rejections``."""
        if self.abort_reason is not None:
            raise SecAggAborted(f"round {self.server_round} was aborted: {self.abort_reason}")
        if self.stage != stage:
            raise RuntimeError(f"{stage} replies out of order (next stage: {self.stage})")
        accepted: dict[int, P] = {}
        seen: set[int] = set()
        for node_id, fields in replies:
            node_id = int(node_id)
            try:
                if node_id not in self._asked:
                    where = "in this round" if node_id not in self.graph else f"asked at the {stage} stage"
                    raise ProtocolError(f"node {node_id} is not {where}")
                if node_id in seen:
                    raise ProtocolError(f"a second {stage} reply from the same node")
                seen.add(node_id)
                if not isinstance(fields, Mapping):
                    raise ProtocolError(f"a {stage} reply must be a record of fields")
                payload = parse(fields)
                payload.header.check(self.session, self.server_round)
                check(node_id, payload)
            except ProtocolError as err:
                accepted.pop(node_id, None)
                self.rejections.append(Rejection(stage, node_id, err.reason))
                continue
            accepted[node_id] = payload
        return accepted

    def _prune(self, alive: set[int]) -> set[int]:
        """Drop nodes whose live neighbourhood cannot hold ``threshold`` shares, until none is left."""
        alive = set(alive)
        while short := {i for i in alive if len(self.graph.neighbours(i) & alive) + 1 < self.threshold}:
            alive -= short
        return alive

    def _need(self, nodes: set[int], what: str) -> None:
        if len(nodes) < self.min_survivors:
            raise self._abort(f"{len(nodes)} nodes {what}, fewer than the minimum of {self.min_survivors}")

    # ------------------------------------------------------------------------------------------
    # 1. setup → advertised keys

    def setup_requests(self) -> dict[int, SetupRequest]:
        self._begin(SETUP, self.graph.participants)
        request = SetupRequest(
            self._header(SETUP), self.graph.participants, self.graph.seed, self.graph.degree,
            self.threshold, self.vector_length, self.quantization,
        )
        return dict.fromkeys(self.graph.participants, request)

    def receive_advertise(self, replies: Iterable[Reply]) -> None:
        seen_keys: set[bytes] = set()

        def check(node_id: int, reply: AdvertiseReply) -> None:
            keys = {reply.mask_public_key, reply.encryption_public_key}
            if keys & seen_keys:
                raise ProtocolError("public key already advertised by another node")
            seen_keys.update(keys)

        valid = self._intake(SETUP, replies, AdvertiseReply.from_fields, check)
        alive = self._prune(set(valid))
        self.progress[SETUP] = sorted(alive)
        self._r.public_keys = {i: (valid[i].mask_public_key, valid[i].encryption_public_key) for i in sorted(alive)}
        self.stage = SHARE_KEYS
        self._need(alive, "advertised keys with enough live neighbours")

    # ------------------------------------------------------------------------------------------
    # 2. share keys

    def share_keys_requests(self) -> dict[int, ShareKeysRequest]:
        u0 = set(self._r.public_keys)
        self._begin(SHARE_KEYS, u0)
        return {
            i: ShareKeysRequest(self._header(SHARE_KEYS), {j: self._r.public_keys[j] for j in sorted(self.graph.neighbours(i) & u0)})
            for i in sorted(u0)
        }

    def receive_share_keys(self, replies: Iterable[Reply]) -> None:
        u0 = set(self._r.public_keys)

        def check(node_id: int, reply: ShareKeysReply) -> None:
            expected = self.graph.neighbours(node_id) & u0
            if set(reply.ciphertexts) != expected:
                raise ProtocolError("encrypted shares are not addressed to exactly this node's neighbours with keys")
            if set(reply.commitments) != expected | {node_id}:
                raise ProtocolError("share commitments do not cover exactly this node's share holders")

        valid = self._intake(SHARE_KEYS, replies, ShareKeysReply.from_fields, check)
        u1 = self._prune(set(valid))
        self.progress[SHARE_KEYS] = sorted(u1)
        self._r.shared = u1
        self._r.commitments = {i: valid[i].commitments for i in u1}
        self._r.forward = {
            dst: {src: valid[src].ciphertexts[dst] for src in sorted(self.graph.neighbours(dst) & u1)} for dst in sorted(u1)
        }
        self.stage = MASKED_INPUT
        self._need(u1, "shared their keys with enough live neighbours")

    # ------------------------------------------------------------------------------------------
    # 3. masked inputs

    def masked_input_requests(self) -> dict[int, MaskedInputRequest]:
        self._begin(MASKED_INPUT, self._r.shared)
        requests = {i: MaskedInputRequest(self._header(MASKED_INPUT), self._r.forward[i]) for i in sorted(self._r.shared)}
        self._r.forward = {}  # forwarded once; the server has no use for the ciphertexts after this
        return requests

    def receive_masked_inputs(self, replies: Iterable[Reply]) -> None:
        length, bits = self.vector_length + 1, self.quantization.modulus_bits
        total = np.zeros(length, dtype=np.uint64)
        survivors: set[int] = set()

        def check(node_id: int, reply: MaskedInputReply) -> None:
            if len(reply.masked_vector) != length * self.quantization.bytes_per_coordinate:
                raise ProtocolError(f"a masked vector must hold {length} values of {bits} bits")

        for node_id, reply in self._intake(MASKED_INPUT, replies, MaskedInputReply.from_fields, check).items():
            total += unpack_vector(reply.masked_vector, length, bits)  # a running sum: no single vector is kept
            survivors.add(node_id)
        total &= modulus_mask(bits)
        self.progress[MASKED_INPUT] = sorted(survivors)
        self._r.masked_sum = total
        self._r.survivors = survivors
        self.stage = UNMASK
        self._need(survivors, "sent masked inputs")
        dropped = self._r.shared - survivors
        for s in sorted(survivors):
            if len(self.graph.neighbours(s) & survivors) + 1 < self.threshold:
                raise self._abort(f"survivor {s} has fewer than {self.threshold} surviving share holders")
        for d in sorted(dropped):
            if len(self.graph.neighbours(d) & survivors) < self.threshold:
                raise self._abort(f"dropout {d} has fewer than {self.threshold} surviving share holders")

    # ------------------------------------------------------------------------------------------
    # 4. unmask

    def unmask_requests(self) -> dict[int, UnmaskRequest]:
        survivors, dropped = self._r.survivors, self._r.shared - self._r.survivors
        self._begin(UNMASK, survivors)
        return {
            i: UnmaskRequest(
                self._header(UNMASK),
                tuple(sorted((self.graph.neighbours(i) & survivors) | {i})),
                tuple(sorted(self.graph.neighbours(i) & dropped)),
            )
            for i in sorted(survivors)
        }

    def receive_unmask(self, replies: Iterable[Reply]) -> None:
        survivors, dropped = self._r.survivors, self._r.shared - self._r.survivors
        h = self._header(UNMASK)

        def check(holder: int, reply: UnmaskReply) -> None:
            neighbourhood = self.graph.neighbours(holder) | {holder}
            if set(reply.self_mask_shares) != neighbourhood & survivors:
                raise ProtocolError("self-mask shares are not for exactly the survivors asked for")
            if set(reply.mask_key_shares) != neighbourhood & dropped:
                raise ProtocolError("mask-key shares are not for exactly the dropouts asked for")
            for kind, shares, index in ((SELF_MASK, reply.self_mask_shares, 0), (MASK_KEY, reply.mask_key_shares, 1)):
                for owner, revealed in shares.items():
                    expected = self._r.commitments[owner][holder][index]
                    if share_commitment(kind, h.session, h.server_round, owner, holder, revealed) != expected:
                        raise ProtocolError(f"the {kind.decode()} share of node {owner} does not match its commitment")

        revealed = self._intake(UNMASK, replies, UnmaskReply.from_fields, check)
        self.progress[UNMASK] = sorted(revealed)
        for holder, reply in revealed.items():
            x = self.graph.x_coordinate(holder)
            for owner, revealed in reply.self_mask_shares.items():
                self._r.self_mask_shares.setdefault(owner, {})[x] = revealed[:SHARE_BYTES]
            for owner, revealed in reply.mask_key_shares.items():
                self._r.mask_key_shares.setdefault(owner, {})[x] = revealed[:SHARE_BYTES]
        self.stage = FINISHED
        for owner, shares in [(s, self._r.self_mask_shares.get(s, {})) for s in sorted(survivors)] + [
            (d, self._r.mask_key_shares.get(d, {})) for d in sorted(dropped)
        ]:
            if len(shares) < self.threshold:
                raise self._abort(f"node {owner}: {len(shares)} valid shares revealed, the threshold is {self.threshold}")

    def finish(self) -> SecAggResult:
        """Remove the masks from the sum, range-check it and dequantize it."""
        if self.abort_reason is not None:
            raise SecAggAborted(f"round {self.server_round} was aborted: {self.abort_reason}")
        if self.stage != FINISHED or self._r.masked_sum is None:
            raise RuntimeError("finish() before the unmask replies were received")
        r, bits, length = self._r, self.quantization.modulus_bits, self.vector_length + 1
        survivors, dropped = r.survivors, r.shared - r.survivors
        total = r.masked_sum.copy()
        try:
            for s in sorted(survivors):
                seed = combine_shares(r.self_mask_shares[s], self.threshold, SECRET_BYTES)
                total -= expand_mask(self_mask_key(seed, self.session, s), length, bits)
            for d in sorted(dropped):
                private = load_private(combine_shares(r.mask_key_shares[d], self.threshold, SECRET_BYTES))
                if private.public_key().public_bytes_raw() != r.public_keys[d][0]:
                    raise ProtocolError(f"the mask key rebuilt for dropout {d} does not match the key it advertised")
                for j in sorted(self.graph.neighbours(d) & survivors):
                    mask = expand_mask(pairwise_mask_key(private, r.public_keys[j][0], self.session, d, j), length, bits)
                    # survivor j applied sign(j, d)·mask; take it back out
                    if pairwise_sign(j, d) > 0:
                        total -= mask
                    else:
                        total += mask
            total &= modulus_mask(bits)
            weighted_sum, total_weight = dequantize_sum(total, self.quantization, len(survivors))
        except (ProtocolError, ValueError) as err:
            raise self._abort(str(err)) from None
        result = SecAggResult(
            weighted_sum=weighted_sum,
            total_weight=total_weight,
            participants=len(self.graph.participants),
            survivors=sorted(survivors),
            dropouts_recovered=sorted(dropped),
            dropped_before_masking=sorted(set(self.graph.participants) - r.shared),
            quantization=self.quantization,
        )
        self._r = _Round()  # shares and keys are of no further use
        self.stage = "done"
        return result
