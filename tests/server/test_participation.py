"""Minimum replies and timeouts: a round needs only its profile's minimum of valid replies, one
dead phone does not cost the round, a round with too few keeps the previous global adapter and
says why, and the run goes on. Driven through `run_federation` over a fake grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Error, Message, MessageType
from safetensors.torch import load_file

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from server.server_app import run_federation
from tests.server.fake_federation import FakeFederation

PHONES = [f"phone-{i:02d}" for i in range(20)]
PHONE_TIMEOUT = 600.0  # the phone profile's round timeout (server.participation.PHONE_TIMEOUT)


def _adapter(out: Path, name: str) -> dict:
    return load_file(str(out / "adapters" / name / "adapter_model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def _dead_in_round_1(count: int):
    """The first `count` nodes sent a round-1 train instruction never answer (they died mid-round)."""
    dead: list[str] = []

    def tamper(message: Message, reply: Message, client_id: str) -> list[Message]:
        if message.metadata.message_type == MessageType.TRAIN and int(message.content["config"]["server-round"]) == 1:
            if len(dead) < count or client_id in dead:
                if client_id not in dead:
                    dead.append(client_id)
                return []
        return [reply]

    return tamper, dead


def _run(tmp_path: Path, clients: list[str], tamper=None, node_seed: int = 0, **config) -> tuple[dict, Path, FakeFederation]:
    out = tmp_path / f"run-{node_seed}"
    grid = FakeFederation(clients, tamper=tamper, node_seed=node_seed, profile=config.get("profile", "hospital"))
    run_federation(grid, RunConfig(num_clients=len(clients), rounds=2, out=str(out), **config).validated())
    assert (out / "report.md").is_file()
    return json.loads((out / "metrics.json").read_text()), out, grid


def test_profile_defaults() -> None:
    from server.participation import PHONE_TIMEOUT as DEFAULT_TIMEOUT, Participation, resolve_participation

    assert DEFAULT_TIMEOUT == PHONE_TIMEOUT
    def resolve(profile: str, n: int, **kw) -> Participation:
        return resolve_participation(RunConfig(profile=profile, num_clients=n, **kw).validated(), n)

    assert resolve("hospital", 4) == Participation(4, 4, 4, 4, 3600.0)
    assert resolve("phone", 20) == Participation(5, 4, 15, 5, PHONE_TIMEOUT)
    assert resolve("phone", 40) == Participation(10, 8, 30, 10, PHONE_TIMEOUT)
    assert resolve("phone", 3) == Participation(3, 2, 2, 3, PHONE_TIMEOUT)  # a small fleet: all, one may miss
    assert resolve("phone", 20, clients_per_round=8, min_train_nodes=2, round_timeout=30.0) == Participation(8, 2, 15, 8, 30.0)
    with pytest.raises(ConfigError, match="min-train-nodes"):
        resolve("phone", 20, min_train_nodes=6)  # more than the 5 sampled
    with pytest.raises(ConfigError, match="min-evaluate-nodes"):
        resolve("hospital", 4, min_evaluate_nodes=5)
    with pytest.raises(ConfigError, match="round-timeout"):
        RunConfig(round_timeout=-1.0).validated()
    # 0 is "the profile's default" too: Flower's run config has no None, and a key must be declared to be set.
    zeros = RunConfig.from_flower({"profile": "phone", "num-clients": 20, "min-train-nodes": 0, "min-evaluate-nodes": 0,
                                   "round-timeout": 0.0, "resume": False, "out": ""})
    assert resolve_participation(zeros, 20) == resolve("phone", 20)


def test_phone_round_completes_when_one_of_five_sampled_phones_dies(tmp_path: Path) -> None:
    tamper, dead = _dead_in_round_1(1)
    metrics, out, grid = _run(tmp_path, PHONES, tamper, profile="phone", dp="record")
    first = metrics["rounds"][0]
    assert first["replies"]["train"] == {"sent": 5, "accepted": 4, "rejected": 0, "failed": 0, "no_reply": 1,
                                         "minimum": 4, "aggregated": True}
    assert first["dropouts"]["train"] == [{"node_id": grid.node_of(dead[0]), "client_id": dead[0]}]
    assert sum(c["trained"] for c in first["clients"]) == 4
    assert not _same(_adapter(out, "round-000"), _adapter(out, "round-001"))  # the round updated the adapter
    assert metrics["rounds"][1]["replies"]["train"]["aggregated"]
    # Every instruction lives as long as the server waits for it, and the server waited that long.
    assert {m.metadata.ttl for m in grid.sent} == {PHONE_TIMEOUT}
    assert set(grid.timeouts) == {PHONE_TIMEOUT}


def test_a_round_with_fewer_valid_replies_than_the_minimum_keeps_the_previous_adapter(tmp_path: Path) -> None:
    tamper, dead = _dead_in_round_1(2)
    metrics, out, _ = _run(tmp_path, PHONES, tamper, profile="phone", dp="record")
    first = metrics["rounds"][0]["replies"]["train"]
    assert first["accepted"] == 3 and not first["aggregated"]
    assert "fewer than the 4 needed (min-train-nodes): kept the previous global adapter" in first["note"]
    assert _same(_adapter(out, "round-000"), _adapter(out, "round-001"))
    assert metrics["rounds"][1]["replies"]["train"]["aggregated"]  # the run went on
    assert not _same(_adapter(out, "round-001"), _adapter(out, "round-002"))
    assert "kept the previous global adapter" in (out / "report.md").read_text()


def test_a_failed_hospital_costs_the_round_but_not_the_run(tmp_path: Path) -> None:
    def crash(message: Message, reply: Message, client_id: str) -> list[Message]:
        if client_id == "h1" and message.metadata.message_type == MessageType.TRAIN and int(message.content["config"]["server-round"]) == 1:
            return [Message(Error(code=0, reason="out of memory"), reply_to=message)]
        return [reply]

    metrics, out, _ = _run(tmp_path, ["h0", "h1", "h2"], crash)
    first = metrics["rounds"][0]
    assert not first["replies"]["train"]["aggregated"] and first["replies"]["train"]["minimum"] == 3
    assert first["failures"] and first["dropouts"]["train"] == []  # it answered, with an error
    assert _same(_adapter(out, "round-000"), _adapter(out, "round-001"))
    assert metrics["rounds"][1]["replies"]["train"]["aggregated"]


def test_client_level_dp_releases_every_round_and_records_a_shortfall(tmp_path: Path) -> None:
    tamper, _ = _dead_in_round_1(20)  # nobody answers in round 1
    metrics, out, _ = _run(tmp_path, PHONES, tamper, profile="phone")  # phone default: client-level DP
    first = metrics["rounds"][0]
    assert first["replies"]["train"]["aggregated"] and "released all the same" in first["replies"]["train"]["note"]
    assert first["client_level"]["rounds"] == 1 and metrics["privacy"]["client_level"]["rounds"] == 2
    assert not _same(_adapter(out, "round-000"), _adapter(out, "round-001"))  # the noise-only release


def test_the_same_seed_samples_the_same_clients_whatever_the_node_ids(tmp_path: Path) -> None:
    def trained(metrics: dict) -> list[list[str]]:
        return [sorted(c["client_id"] for c in r["clients"] if c["trained"]) for r in metrics["rounds"]]

    first, _, _ = _run(tmp_path, PHONES, node_seed=1, profile="phone", dp="record")
    second, _, _ = _run(tmp_path, PHONES, node_seed=2, profile="phone", dp="record")
    assert trained(first) == trained(second)
    assert all(len(r) == 5 for r in trained(first)) and trained(first)[0] != trained(first)[1]
