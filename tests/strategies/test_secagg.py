"""The server's SecAgg+ state machine driving in-memory clients: correctness within the stated
quantization error, dropouts, clean aborts, rejected tampering/replays/outsiders, and an
instrumented server that never holds one client's unmasked update."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from fedpriv.secagg.crypto import decode_ids
from fedpriv.secagg.errors import ProtocolError, SecAggAborted
from fedpriv.secagg.messages import MASKED_INPUT, SETUP, SHARE_KEYS, UNMASK, AdvertiseReply, Header, MaskedInputReply
from fedpriv.secagg.protocol import CIPHERTEXT_BYTES, pack_vector
from fedpriv.secagg.quantization import QuantizationSpec, quantize
from strategies.secagg import SecAggServer
from tests.fake_secagg import FakeSecAggFederation, find_plaintext, held_values, node_ids

D = 300
CLIP = 0.5


def federation(n: int, seed: int = 0, weights: bool = True) -> FakeSecAggFederation:
    rng = np.random.default_rng(seed)
    nodes = node_ids(n, seed)
    updates = {i: rng.normal(0.0, 0.2, D) for i in nodes}  # a few coordinates exceed the clip range
    ws = {i: int(rng.integers(1, 500)) if weights else 1 for i in nodes}
    return FakeSecAggFederation(updates, ws, seed)


SPARSE = 14  # a Harary graph of degree 14 on 20 nodes (threshold 8): any 6 dropouts are recovered


def server_for(fed: FakeSecAggFederation, server_round: int = 1, rounding: str = "stochastic", cls=SecAggServer, **kw):
    spec = QuantizationSpec.for_clients(len(fed.updates), CLIP, max_weight=1000, rounding=rounding)
    return cls(server_round, sorted(fed.updates), D, spec, **kw)


def assert_sum_matches(fed, server_or_spec, result, survivors):
    spec = server_or_spec.quantization
    expected, weight = fed.plaintext_sum(survivors, spec)
    assert result.survivors == sorted(survivors)
    assert result.total_weight == weight
    assert np.abs(result.weighted_sum - expected).max() <= result.sum_error_bound * (1 + 1e-9)
    assert np.abs(result.mean() - expected / weight).max() <= spec.coordinate_error * (1 + 1e-9)


@pytest.mark.parametrize("n", [3, 10, 20])
@pytest.mark.parametrize("rounding", ["deterministic", "stochastic"])
def test_unmasked_sum_equals_the_plaintext_sum_within_the_stated_error(n, rounding):
    fed = federation(n)
    server = server_for(fed, rounding=rounding)
    result = fed.run(server)
    assert_sum_matches(fed, server, result, fed.updates)
    assert result.dropouts_recovered == [] and server.rejections == [] and fed.refusals == []
    metrics = result.metrics()
    assert metrics["secagg-participants"] == n and metrics["secagg-survivors"] == n
    assert metrics["secagg-sum-error-bound"] == pytest.approx(result.sum_error_bound)


@pytest.mark.parametrize(("n", "degree"), [(10, None), (20, None), (20, SPARSE)])
def test_round_completes_when_30_percent_drop_after_sharing_keys(n, degree):
    fed = federation(n, seed=n)
    server = server_for(fed, degree=degree)
    assert server.graph.degree == (n - 1 if degree is None else degree)
    dropped = set(sorted(fed.updates)[:: 3][: int(0.3 * n)])
    fed.drop_at[MASKED_INPUT] = dropped
    result = fed.run(server)
    survivors = set(fed.updates) - dropped
    assert_sum_matches(fed, server, result, survivors)
    assert result.dropouts_recovered == sorted(dropped)
    assert result.metrics()["secagg-dropouts-recovered"] == len(dropped)
    # Survivors revealed the dropouts' mask keys and never their self-mask seeds.
    for reply in fed.replies[UNMASK].values():
        assert not set(decode_ids(reply["self-mask-owners"])) & dropped


def test_dropouts_at_every_stage_together():
    fed = federation(20, seed=3)
    server = server_for(fed, degree=SPARSE)
    nodes = sorted(fed.updates)
    fed.drop_at = {SETUP: {nodes[0]}, SHARE_KEYS: {nodes[1]}, MASKED_INPUT: {nodes[2], nodes[3]}, UNMASK: {nodes[4]}}
    result = fed.run(server)
    # nodes[4] sent its masked input, then went silent: still a survivor, its self mask rebuilt from shares.
    assert_sum_matches(fed, server, result, set(nodes[4:]))
    assert result.dropouts_recovered == sorted(nodes[2:4])
    assert result.dropped_before_masking == sorted(nodes[:2])


def test_nodes_whose_neighbourhood_cannot_meet_the_threshold_are_pruned_before_masking():
    fed = federation(20, seed=4)
    server = server_for(fed, degree=SPARSE)
    ring = server.graph.ring
    target = ring[0]
    # The 8 ring neighbours within distance 4 leave: 6 live neighbours + itself < t = 8. Nodes at
    # distance 5 keep 7 live neighbours once the target is pruned too, so the pruning stops there.
    fed.drop_at[SETUP] = {ring[off] for off in (1, 2, 3, 4, -1, -2, -3, -4)}
    result = fed.run(server)
    assert target not in fed.requests[SHARE_KEYS]
    assert result.dropped_before_masking == sorted(fed.drop_at[SETUP] | {target})
    assert_sum_matches(fed, server, result, set(result.survivors))
    assert set(result.survivors).isdisjoint(fed.drop_at[SETUP] | {target})


def test_fewer_survivors_than_the_threshold_abort_cleanly_before_anything_is_revealed():
    fed = federation(10, seed=5)
    server = server_for(fed)
    assert server.threshold == 6
    fed.drop_at[MASKED_INPUT] = set(sorted(fed.updates)[:5])  # 5 survivors < 6
    with pytest.raises(SecAggAborted, match="fewer than 6 surviving share holders"):
        fed.run(server)
    assert UNMASK not in fed.requests  # no client was asked for a share
    assert not [v for v in held_values(server) if isinstance(v, np.ndarray)]  # the masked sum is gone
    with pytest.raises(SecAggAborted):
        server.unmask_requests()
    with pytest.raises(SecAggAborted):
        server.finish()


def test_too_few_unmask_replies_abort_without_a_result():
    fed = federation(10, seed=6)
    server = server_for(fed)
    fed.drop_at[UNMASK] = set(sorted(fed.updates)[:5])  # 5 holders answer, the threshold is 6
    with pytest.raises(SecAggAborted, match="valid shares revealed, the threshold is 6"):
        fed.run(server)
    assert not [v for v in held_values(server) if isinstance(v, np.ndarray | bytes) and len(v) > 32]
    with pytest.raises(SecAggAborted):
        server.finish()


def test_too_few_participants_at_setup_abort():
    fed = federation(4, seed=7)
    server = server_for(fed, min_survivors=3)
    fed.drop_at[SETUP] = set(sorted(fed.updates)[:2])
    with pytest.raises(SecAggAborted, match="fewer than the minimum of 3"):
        fed.run(server)
    assert SHARE_KEYS not in fed.requests


def _flip(blob: bytes, index: int) -> bytes:
    out = bytearray(blob)
    out[index] ^= 0x01
    return bytes(out)


def test_a_share_tampered_in_transit_is_refused_by_its_receiver_and_the_round_recovers():
    fed = federation(10, seed=8)
    server = server_for(fed)
    victim = sorted(fed.updates)[1]

    def tamper(stage, node, fields):
        if stage == MASKED_INPUT and node == victim:
            fields["ciphertexts"] = _flip(fields["ciphertexts"], 40)  # inside the first sealed share
        return fields

    fed.tamper_request = tamper
    result = fed.run(server)
    assert [(s, n) for s, n, _ in fed.refusals] == [(MASKED_INPUT, victim)]
    assert "authentication" in fed.refusals[0][2]
    assert result.dropouts_recovered == [victim]
    assert_sum_matches(fed, server, result, set(fed.updates) - {victim})


def test_a_tampered_revealed_share_fails_its_commitment_and_is_rejected():
    fed = federation(10, seed=9)
    server = server_for(fed)
    nodes = sorted(fed.updates)
    fed.drop_at[MASKED_INPUT] = {nodes[0]}
    liars = {nodes[1]: "self-mask-shares", nodes[2]: "mask-key-shares"}

    def tamper(stage, node, fields):
        if stage == UNMASK and node in liars:
            fields[liars[node]] = _flip(fields[liars[node]], 3)
        return fields

    fed.tamper_reply = tamper
    result = fed.run(server)
    rejected = {r.node_id: r.reason for r in server.rejections}
    assert set(rejected) == set(liars)
    assert "self-mask share" in rejected[nodes[1]] and "mask-key share" in rejected[nodes[2]]
    assert all("does not match its commitment" in reason for reason in rejected.values())
    assert_sum_matches(fed, server, result, set(nodes[1:]))


def test_replayed_messages_from_an_earlier_round_are_rejected():
    fed = federation(10, seed=10)
    first = fed.run(server_for(fed, server_round=1))
    old_requests = {stage: dict(reqs) for stage, reqs in fed.requests.items()}
    old_replies = {stage: dict(reps) for stage, reps in fed.replies.items()}
    nodes = sorted(fed.updates)
    assert first.total_weight > 0

    # The server gets round 1's share-keys reply of one node in round 2.
    second = server_for(fed, server_round=2)
    stale = nodes[3]
    fed.tamper_reply = lambda stage, node, f: old_replies[SHARE_KEYS][node] if (stage, node) == (SHARE_KEYS, stale) else f
    result = fed.run(second)
    assert [(r.stage, r.node_id) for r in second.rejections] == [(SHARE_KEYS, stale)]
    assert "round 1, this is round 2" in second.rejections[0].reason
    assert_sum_matches(fed, second, result, set(nodes) - {stale})

    # A client gets round 2's request with a share sealed in round 1 between the same two nodes.
    third = server_for(fed, server_round=3)
    receiver = nodes[5]
    fed.tamper_reply = None

    def replay_share(stage, node, fields):
        if stage == MASKED_INPUT and node == receiver:
            width = len(fields["ciphertexts"]) // (len(fields["sources"]) // 8)
            fields["ciphertexts"] = old_requests[MASKED_INPUT][receiver]["ciphertexts"][:width] + fields["ciphertexts"][width:]
        return fields

    fed.tamper_request = replay_share
    result = fed.run(third)
    assert [(s, n) for s, n, _ in fed.refusals] == [(MASKED_INPUT, receiver)]
    assert "authentication" in fed.refusals[0][2]
    assert_sum_matches(fed, third, result, set(nodes) - {receiver})

    # And a whole round-1 request replayed to a client that has moved on.
    client = fed.client(nodes[0])
    with pytest.raises(ProtocolError, match="round 1, but this node already took part in round 3"):
        client.handle(old_requests[SETUP][nodes[0]])


def test_messages_from_nodes_outside_the_round_are_rejected():
    fed = federation(10, seed=11)
    server = server_for(fed)
    nodes = sorted(fed.updates)
    outsider = max(nodes) + 1
    fed.drop_at[SETUP] = {nodes[0]}
    # Well-formed replies with this round's header: one from a node that was never sampled, one
    # masked input from a node that left at setup.
    fed.inject = {
        SETUP: [(outsider, AdvertiseReply(Header(SETUP, server.session, 1), os.urandom(32), os.urandom(32)).to_fields())],
        MASKED_INPUT: [(nodes[0], MaskedInputReply(Header(MASKED_INPUT, server.session, 1), bytes((D + 1) * 6)).to_fields())],
    }
    result = fed.run(server)
    reasons = {(r.stage, r.node_id): r.reason for r in server.rejections}
    assert reasons == {
        (SETUP, outsider): f"node {outsider} is not in this round",
        (MASKED_INPUT, nodes[0]): f"node {nodes[0]} is not asked at the masked-input stage",
    }
    assert_sum_matches(fed, server, result, set(nodes[1:]))


def test_malformed_and_duplicate_replies_are_rejected_without_crashing_the_round():
    fed = federation(20, seed=12)
    server = server_for(fed, degree=SPARSE)
    nodes = sorted(fed.updates)
    bad = {
        (SETUP, nodes[0]): lambda f: {k: v for k, v in f.items() if k != "mask-public-key"},
        (SETUP, nodes[1]): lambda f: {**f, "secagg-stage": UNMASK},
        (SHARE_KEYS, nodes[2]): lambda f: {**f, "ciphertexts": f["ciphertexts"][:-1]},
        (SHARE_KEYS, nodes[3]): lambda f: {**f, "destinations": f["destinations"][8:], "ciphertexts": f["ciphertexts"][CIPHERTEXT_BYTES:]},
        (MASKED_INPUT, nodes[4]): lambda f: {**f, "masked-vector": f["masked-vector"] + b"\0" * 6},
        (MASKED_INPUT, nodes[5]): lambda f: "not a record",
    }
    fed.tamper_reply = lambda stage, node, f: bad[(stage, node)](f) if (stage, node) in bad else f
    orig_exchange = fed.exchange

    def exchange(stage, requests):
        replies = orig_exchange(stage, requests)
        return replies + [replies[-1]] if stage == UNMASK else replies  # one node answers twice

    result = server.run(exchange)
    rejected = [(r.stage, r.node_id) for r in server.rejections]
    assert set(bad) <= set(rejected)
    duplicate = [r for r in server.rejections if r.stage == UNMASK]
    assert len(duplicate) == 1 and "second unmask reply" in duplicate[0].reason
    # Setup and share-keys failures left before masking; masked-input failures are recovered dropouts.
    assert set(result.dropped_before_masking) == set(nodes[:4])
    assert set(result.dropouts_recovered) == set(nodes[4:6])
    assert_sum_matches(fed, server, result, set(nodes[6:]))


class InstrumentedServer(SecAggServer):
    """Scans everything the server object holds after every assignment and every stage call."""

    federation: FakeSecAggFederation | None = None
    findings: list[str] = []
    scans = 0

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        self._scan()

    def _scan(self):
        fed = type(self).federation
        if fed is not None and "quantization" in vars(self):
            type(self).scans += 1
            type(self).findings += find_plaintext(self, fed.updates, fed.weights, self.quantization)

    def __getattribute__(self, name):
        attr = super().__getattribute__(name)
        if callable(attr) and not name.startswith("_") and name not in ("run",):
            @functools.wraps(attr)
            def scanned(*args, **kwargs):
                try:
                    return attr(*args, **kwargs)
                finally:
                    self._scan()
            return scanned
        return attr


def test_the_server_never_holds_any_single_clients_unmasked_update():
    fed = federation(10, seed=13)
    nodes = sorted(fed.updates)
    fed.drop_at = {MASKED_INPUT: set(nodes[:3]), UNMASK: {nodes[3]}}
    InstrumentedServer.federation, InstrumentedServer.findings, InstrumentedServer.scans = fed, [], 0
    server = server_for(fed, cls=InstrumentedServer)
    result = fed.run(server)
    assert InstrumentedServer.scans > 20  # every stage call and every attribute write was scanned
    assert InstrumentedServer.findings == []
    assert_sum_matches(fed, server, result, set(nodes[3:]))
    # The released sum itself is no single client's update either.
    assert find_plaintext(result.weighted_sum, fed.updates, fed.weights, server.quantization) == []


def test_the_scanner_does_find_a_plaintext_update_when_one_is_held():
    fed = federation(4, seed=14)
    spec = QuantizationSpec.for_clients(4, CLIP, max_weight=1000)
    node = sorted(fed.updates)[2]
    quantized = quantize(fed.updates[node], fed.weights[node], spec)
    for leak in ({"update": fed.updates[node]}, [quantized], {"packed": pack_vector(quantized, spec.modulus_bits)}):
        assert find_plaintext(leak, fed.updates, fed.weights, spec), leak
    assert find_plaintext({"sum": sum(fed.updates.values())}, fed.updates, fed.weights, spec) == []
