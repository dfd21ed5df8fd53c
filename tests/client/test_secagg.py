"""The device's SecAgg+ state machine refuses what would leak or break the round: bad parameters,
replays, out-of-order stages, keys or shares from non-neighbours, tampered shares, and any request
that would reveal both secrets of a node."""

from __future__ import annotations

import dataclasses
import itertools
import os

import numpy as np
import pytest
from flwr.app import ConfigRecord

from client.secagg import ClientState, SecAggClient
from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.messages import (
    MASKED_INPUT,
    SETUP,
    SHARE_KEYS,
    STAGES,
    UNMASK,
    Header,
    MaskedInputRequest,
    SetupRequest,
    UnmaskRequest,
)
from fedpriv.secagg.protocol import CIPHERTEXT_BYTES, SHARE_BYTES
from fedpriv.secagg.quantization import QuantizationSpec
from fedpriv.secagg.shamir import combine_shares
from strategies.secagg import SecAggServer
from tests.fake_secagg import FakeSecAggFederation, node_ids

D = 50


def setup_round(n: int = 10, seed: int = 0, server_round: int = 1, degree: int | None = None):
    rng = np.random.default_rng(seed)
    nodes = node_ids(n, seed)
    fed = FakeSecAggFederation({i: rng.normal(0, 0.1, D) for i in nodes}, {i: 3 for i in nodes}, seed)
    server = SecAggServer(server_round, nodes, D, QuantizationSpec.for_clients(n, 1.0, max_weight=10), degree=degree)
    return fed, server, nodes


def refuses(client: SecAggClient, call, *args, match: str) -> None:
    """``call`` raises ProtocolError matching ``match`` and leaves the client's state unchanged."""
    before = client.export()
    with pytest.raises(ProtocolError, match=match):
        call(*args)
    assert client.export() == before


def test_setup_with_unsafe_or_foreign_parameters_is_refused():
    _, server, nodes = setup_round()
    request = server.setup_requests()[nodes[0]]
    client = SecAggClient(nodes[0])
    refuses(SecAggClient(12345), SecAggClient(12345).setup, request, match="not among this round's participants")
    for change, match in (
        ({"threshold": 5}, "strict majority"),  # with 5 of 10 holders a lying server could get both secrets
        ({"degree": 4}, "strict majority"),
        ({"vector_length": 0}, "vector length"),
        ({"quantization": QuantizationSpec(1.0, 32, 48, 65_535)}, "capacity"),  # the sum of 10 would wrap
    ):
        refuses(client, client.setup, dataclasses.replace(request, **change), match=match)
    reply = client.setup(request)
    assert len(reply.mask_public_key) == 32 and reply.mask_public_key != reply.encryption_public_key
    refuses(client, client.setup, request, match="setup repeated inside a running session")


def test_requests_out_of_order_or_from_another_session_or_round_are_refused():
    fed, server, nodes = setup_round()
    share_requests = fed.run_until(server, SHARE_KEYS)
    me = nodes[0]
    client = fed.client(me)
    request = share_requests[me]
    refuses(client, client.unmask, UnmaskRequest(Header(UNMASK, server.session, 1), (me,), ()), match="out of order")
    refuses(client, client.masked_input, MaskedInputRequest(Header(MASKED_INPUT, server.session, 1), {}), np.zeros(D), 1,
            match="out of order")
    refuses(client, client.share_keys, dataclasses.replace(request, header=Header(SHARE_KEYS, server.session, 2)),
            match="round 2, this is round 1")
    refuses(client, client.share_keys, dataclasses.replace(request, header=Header(SHARE_KEYS, os.urandom(16), 1)),
            match="another secure-aggregation session")
    refuses(SecAggClient(me), SecAggClient(me).share_keys, request, match="without a setup")
    client.share_keys(request)
    refuses(client, client.share_keys, request, match="out of order")  # shares are dealt once


def test_a_setup_for_an_earlier_round_is_refused():
    fed, server, nodes = setup_round(server_round=4)
    fed.run_until(server, SHARE_KEYS)
    client = fed.client(nodes[0])
    old = SetupRequest(Header(SETUP, os.urandom(16), 3), tuple(nodes), os.urandom(32), 9, 6, D, server.quantization)
    refuses(client, client.setup, old, match="round 3, but this node already took part in round 4")
    client.setup(dataclasses.replace(old, header=Header(SETUP, os.urandom(16), 4)))  # a re-run of round 4 is fine


def test_keys_for_non_neighbours_duplicate_keys_and_too_few_neighbours_are_refused():
    fed, server, nodes = setup_round(n=20, degree=14)
    requests = fed.run_until(server, SHARE_KEYS)
    me = nodes[0]
    client = fed.client(me)
    request = requests[me]
    stranger = next(i for i in nodes if i != me and i not in server.graph.neighbours(me))
    keys = dict(request.public_keys)
    refuses(client, client.share_keys, dataclasses.replace(request, public_keys={**keys, stranger: (os.urandom(32), os.urandom(32))}),
            match=f"node {stranger}, which is not a neighbour")
    first, second = sorted(keys)[:2]
    refuses(client, client.share_keys, dataclasses.replace(request, public_keys={**keys, second: keys[first]}),
            match="same public key")
    few = dict(itertools.islice(keys.items(), server.threshold - 2))
    refuses(client, client.share_keys, dataclasses.replace(request, public_keys=few), match="cannot hold 8 shares")


def test_shares_that_are_tampered_relabelled_or_from_strangers_are_refused():
    fed, server, nodes = setup_round()
    requests = fed.run_until(server, MASKED_INPUT)
    me = nodes[0]
    client = fed.client(me)
    request = requests[me]
    cts = dict(request.ciphertexts)
    a, b = sorted(cts)[:2]
    update = fed.updates[me]
    for forged, match in (
        ({**cts, a: cts[a][:-1] + bytes([cts[a][-1] ^ 1])}, f"shares from node {a}: .*authentication"),
        ({**cts, a: cts[b], b: cts[a]}, "authentication"),  # sealed for (b → me), delivered as from a
        ({**cts, 99: os.urandom(CIPHERTEXT_BYTES)}, "node 99, which is not a neighbour"),
        (dict(itertools.islice(cts.items(), server.threshold - 2)), "threshold 6 cannot be met"),
    ):
        refuses(client, client.masked_input, dataclasses.replace(request, ciphertexts=forged), update, 3, match=match)
    with pytest.raises(ValueError, match="expects 50"):
        client.masked_input(request, np.zeros(D + 1), 3)
    with pytest.raises(ValueError, match="non-finite"):
        client.masked_input(request, np.full(D, np.nan), 3)
    with pytest.raises(ValueError, match="weight"):
        client.masked_input(request, update, 11)  # above max-weight
    reply = client.masked_input(request, update, 3)
    assert len(reply.masked_vector) == (D + 1) * 6
    # The secrets are gone; what remains are the neighbours' shares (and its own).
    assert client.state.mask_private == client.state.encryption_private == client.state.self_mask_seed == b""
    assert client.state.share_keys == {}
    assert set(client.state.held) == set(cts) | {me}


def test_unmask_requests_that_would_reveal_too_much_are_refused():
    fed, server, nodes = setup_round()
    fed.drop_at[MASKED_INPUT] = {nodes[1]}
    requests = fed.run_until(server, UNMASK)
    me = nodes[0]
    client = fed.client(me)
    request = requests[me]
    assert request.dropped == (nodes[1],)
    h = request.header
    refuses(client, client.unmask, UnmaskRequest(h, request.survivors + (nodes[1],), request.dropped), match="both as survivor and as dropout")
    refuses(client, client.unmask, UnmaskRequest(h, tuple(s for s in request.survivors if s != me), request.dropped + (me,)),
            match="not listed as a survivor")
    refuses(client, client.unmask, UnmaskRequest(h, request.survivors[:5], request.dropped), match="below the threshold 6")
    refuses(client, client.unmask, UnmaskRequest(h, request.survivors + (424242,), request.dropped), match="holds none")
    reply = client.unmask(request)
    assert set(reply.self_mask_shares) == set(request.survivors) and set(reply.mask_key_shares) == {nodes[1]}
    refuses(client, client.unmask, request, match="out of order")  # never a second answer


def test_a_server_telling_holders_different_stories_cannot_rebuild_both_secrets():
    """Every split of a node's 10 holders into "it survived" and "it dropped" gives the server
    fewer than t = 6 shares of one of the two secrets (2t > k + 1)."""
    fed, server, nodes = setup_round()
    requests = fed.run_until(server, UNMASK)
    target = nodes[0]
    holders = sorted(server.graph.neighbours(target) | {target})
    for told_dropped in range(0, len(holders)):
        revealed = {"self": {}, "key": {}}
        liars = set(holders[:told_dropped]) - {target}  # the target always sees itself as a survivor
        for holder in holders:
            client = fed.client(holder)  # a fresh copy from the saved state: one answer each
            r = requests[holder]
            if holder in liars:
                r = UnmaskRequest(r.header, tuple(s for s in r.survivors if s != target), (*r.dropped, target))
            reply = client.unmask(r)
            x = server.graph.x_coordinate(holder)
            if target in reply.self_mask_shares:
                revealed["self"][x] = reply.self_mask_shares[target][:SHARE_BYTES]
            if target in reply.mask_key_shares:
                revealed["key"][x] = reply.mask_key_shares[target][:SHARE_BYTES]
        assert min(len(revealed["self"]), len(revealed["key"])) < server.threshold
        small = min(revealed.values(), key=len)
        with pytest.raises(ProtocolError):
            combine_shares(small, server.threshold, 32)


def test_state_round_trips_through_a_config_record_at_every_stage():
    """Flower's ``context.state`` keeps ConfigRecords: the round runs with one node's state passed
    through a ConfigRecord after every stage."""
    fed, server, nodes = setup_round()
    me, checked = nodes[2], []
    deliver = fed.exchange

    def exchange(stage, requests):
        replies = deliver(stage, requests)
        fields = fed.states[me]
        record = ConfigRecord(fields)
        assert SecAggClient.restore(me, dict(record)).export() == fields
        fed.states[me] = dict(record)
        checked.append(stage)
        return replies

    result = server.run(exchange)
    assert checked == list(STAGES)
    assert result.survivors == nodes and result.total_weight == 3 * len(nodes)
    assert ClientState.from_fields(fed.states[me]).stage == UNMASK and ClientState.from_fields(fed.states[me]).held == {}
    broken = {k: v for k, v in fed.states[me].items() if k != "held/ids"}
    with pytest.raises(ProtocolError, match="state is unreadable"):
        SecAggClient.restore(me, broken)
