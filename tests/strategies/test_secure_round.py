"""A secure round (strategies/secure_round.py) against the same round in plaintext, for every
strategy that aggregates by sums: fedavg (with and without a norm bound), ffa, fedsa (shared part
only), hetlora zero-padding (devices pad their update to the global rank) and client-level DP.
The devices answer through client/secagg_app.py; the released global adapter differs from the
plaintext one by at most the stated quantization bound (plus the float32 rounding of the adapter)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord

from fedpriv.errors import ConfigError
from fedpriv.secagg.update import SECAGG_RECORD
from strategies.base import decode_record, to_array_record
from strategies.client_dp import ClientLevelDP
from strategies.fedavg import FedAvgLora
from strategies.fedsa import FedSALora
from strategies.ffa import FFALora
from strategies.hetlora import HetLora
from tests.fakes import ONE_NODE, make_adapter
from tests.server.fake_federation import FakeFederation

pytestmark = pytest.mark.usefixtures("task_identity")

CLIENTS = ["c0", "c1", "c2", "c3", "c4"]


def _hetlora(grid: FakeFederation, **kw) -> HetLora:
    ranks = {grid.node_of(c): r for c, r in zip(CLIENTS, (2, 4, 8, 4, 2), strict=True)}
    return HetLora(client_ranks=ranks, **ONE_NODE, **kw)


def _client_dp(inner, **kw):
    return ClientLevelDP(inner, clipping_norm=0.1, noise_multiplier=0.5, sampling="all", seed=3, **kw)


BUILDERS = {
    "fedavg": lambda grid, **kw: FedAvgLora(**ONE_NODE, **kw),
    "fedavg, norm bound": lambda grid, **kw: FedAvgLora(norm_bound=0.05, **ONE_NODE, **kw),
    "ffa": lambda grid, **kw: FFALora(**ONE_NODE, **kw),
    "fedsa": lambda grid, **kw: FedSALora(**ONE_NODE, **kw),
    "hetlora zero-pad": _hetlora,
    "client-level DP, ffa": lambda grid, **kw: _client_dp(FFALora(**ONE_NODE, **kw)),
    "client-level DP, hetlora zero-pad": lambda grid, **kw: _client_dp(_hetlora(grid, **kw)),
}


def _round(strategy, grid: FakeFederation, initial: dict, secure: bool, server_round: int = 1):
    arrays, config = to_array_record(initial), ConfigRecord({"lora-alpha": 16.0})
    if secure:
        return strategy.train_secure(server_round, arrays, config, grid, grid.send_and_receive)
    messages = list(strategy.configure_train(server_round, arrays, config, grid))
    return strategy.aggregate_train(server_round, grid.send_and_receive(messages))


def _inner(strategy):
    return strategy.strategy if isinstance(strategy, ClientLevelDP) else strategy


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_secure_round_releases_the_plaintext_aggregate_within_the_stated_bound(name):
    initial = make_adapter(rank=8, seed=1)
    released = {}
    for secure in (False, True):
        grid = FakeFederation(CLIENTS, node_seed=4)
        strategy = BUILDERS[name](grid, secure_aggregation=secure)
        arrays, metrics = _round(strategy, grid, initial, secure)
        assert arrays is not None
        released[secure] = decode_record(arrays)
        if secure:
            record = _inner(strategy).secure_records[1]
            setup = [m for m in grid.sent if SECAGG_RECORD in m.content and m.content[SECAGG_RECORD]["secagg-stage"] == "setup"]
            assert len(setup) == len(CLIENTS) and all("arrays" in m.content for m in setup)  # the train instruction
            later = [m for m in grid.sent if m not in setup]
            assert {m.content[SECAGG_RECORD]["secagg-stage"] for m in later} == {"share-keys", "masked-input", "unmask"}
            assert not record["aborted"] and record["in_sum"] == len(CLIENTS) and record["dropouts_recovered"] == 0
            assert metrics["secagg-survivors"] == len(CLIENTS)
            bound = record["update_error_bound"]
            report = _inner(strategy).reports[("train", 1)]
            assert all(a.upload_bytes == record["bytes_sent"][a.client_id] > 0 for a in report.accepted)
    assert released[True].keys() == released[False].keys()
    for key, plain in released[False].items():
        ulp = np.spacing(np.abs(plain).astype(np.float32)).astype(np.float64)
        diff = np.abs(released[True][key].astype(np.float64) - plain.astype(np.float64))
        assert np.all(diff <= bound + 2 * ulp), (key, float(diff.max()), bound)
    changed = [k for k in released[True] if not np.array_equal(released[True][k], initial[k])]
    assert changed  # the round did move the adapter


def test_a_device_whose_masked_weight_differs_from_its_reported_one_aborts_the_round():
    """num-examples is reported in plaintext; the weight inside the masked vector must add up to it.
    Here c2 masks its true weight but its reply claims 30 examples."""
    def claim_more(message, reply, client_id):
        if client_id == "c2" and message.content[SECAGG_RECORD]["secagg-stage"] == "setup":
            reply.content["metrics"]["num-examples"] = 30
        return [reply]

    grid = FakeFederation(CLIENTS, node_seed=4, tamper=claim_more)
    strategy = FedAvgLora(secure_aggregation=True, **ONE_NODE)
    arrays, metrics = _round(strategy, grid, make_adapter(rank=4, seed=2), secure=True)
    record = strategy.secure_records[1]
    assert arrays is None and metrics["secagg-aborted"] == 1
    assert record["aborted"] and "false weight" in record["abort_reason"] and record["released"] == "nothing"
    assert "kept the previous global adapter" in strategy.reports[("train", 1)].note


def test_a_reply_with_plaintext_arrays_is_refused_under_secure_aggregation():
    def leaky(message, reply, client_id):
        if client_id == "c0" and message.content[SECAGG_RECORD]["secagg-stage"] == "setup":
            reply.content["arrays"] = message.content["arrays"]  # a device that also sends its arrays
        return [reply]

    grid = FakeFederation(CLIENTS, node_seed=4, tamper=leaky)
    strategy = FedAvgLora(secure_aggregation=True, **ONE_NODE)
    arrays, _ = _round(strategy, grid, make_adapter(rank=4, seed=2), secure=True)
    assert arrays is not None  # the other four aggregate
    rejected = strategy.rejections[1]
    assert [n for n, _ in rejected] == [grid.node_of("c0")] and "accepted only masked" in rejected[0][1]
    assert strategy.secure_records[1]["in_sum"] == 4


def test_options_that_need_plaintext_updates_are_refused_with_secure_aggregation():
    with pytest.raises(ConfigError, match="trim-beta") as err:
        FedAvgLora(trim_beta=0.2, secure_aggregation=True)
    assert "secure-aggregation" in str(err.value)
    with pytest.raises(ConfigError, match="hetlora-method"):
        HetLora(method="svd", secure_aggregation=True)
    with pytest.raises(ConfigError, match="hetlora-pad-target"):
        HetLora(pad_target="weights", secure_aggregation=True)
