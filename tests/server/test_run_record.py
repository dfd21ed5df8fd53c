"""The run record: strict JSON, ε = ∞ kept readable, a faithful round trip (what a resumed run
continues from), and the metrics.json keys the readers use (report, personalize, studies, CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from flwr.app import Message, MessageType

from fedpriv.cli.simulate import print_summary
from fedpriv.config import RunConfig
from server.run_record import RunRecord, dumps_metrics, load_metrics, loads_metrics
from server.server_app import run_federation
from strategies.validation import AcceptedReply, PhaseReport
from tests.server.fake_federation import FakeFederation
from tests.server.test_recording import strict_json

DP_KEYS = {"epsilon": math.inf, "delta": 1e-5, "noise_multiplier": 0.0, "sample_rate": 0.1, "steps": 7}


def _record(tmp_path: Path, **config) -> RunRecord:
    return RunRecord(config=RunConfig(num_clients=2, out=str(tmp_path), **config).validated(), out_dir=tmp_path)


def test_non_finite_numbers_are_strings_in_strict_json_and_read_back(tmp_path: Path) -> None:
    record = _record(tmp_path)
    report = PhaseReport("train", 1, sent=[1], aggregated=True)
    report.accepted.append(AcceptedReply(1, "c1", {"train_loss": 1.0, "num-examples": 3, "start_perplexity": math.inf, **DP_KEYS}, 10))
    record.add_phase(report)
    record.client_level[1] = {"epsilon": math.inf, "planned_epsilon": math.inf, "delta": 1e-5, "rounds": 1}
    strict = strict_json(record.save())
    assert strict["privacy"]["record_level"]["c1"]["epsilon"] == "inf"
    assert strict["rounds"][0]["clients"][0]["start_perplexity"] == "inf"
    loaded = load_metrics(tmp_path / "metrics.json")
    assert loaded["privacy"]["record_level"]["c1"]["epsilon"] == math.inf
    assert loaded["privacy"]["client_level"]["planned_epsilon"] == math.inf
    assert float(strict["privacy"]["client_level"]["epsilon"]) == math.inf  # plain float() reads it too
    with pytest.raises(ValueError):
        json.dumps({"x": math.inf}, allow_nan=False)  # what dumps_metrics guards against
    assert loads_metrics(dumps_metrics({"epsilon": -math.inf, "client_id": "inf"})) == {"epsilon": -math.inf, "client_id": "inf"}


def test_only_accepted_replies_are_recorded(tmp_path: Path) -> None:
    record = _record(tmp_path)
    report = PhaseReport("train", 1, sent=[1, 2, 3], rejected=[(2, "metric 'train_loss' is NaN")],
                         failed=[(3, "error reply (code 0): boom")], client_of={3: "c3"})
    report.accepted.append(AcceptedReply(1, "c1", {"train_loss": 1.0, "num-examples": 3, **DP_KEYS, "epsilon": 2.0}, 10))
    record.add_phase(report)
    data = record.to_json()
    (entry,) = data["rounds"]
    assert [c["client_id"] for c in entry["clients"]] == ["c1"]
    assert entry["rejected"] == ["node 2: metric 'train_loss' is NaN"] and entry["failures"] == ["node 3: error reply (code 0): boom"]
    assert list(data["privacy"]["record_level"]) == ["c1"]
    assert entry["replies"]["train"] == {"sent": 3, "accepted": 1, "rejected": 1, "failed": 1, "no_reply": 0, "minimum": 1,
                                         "aggregated": False}


def _fake_run(tmp_path: Path, **config) -> Path:
    def drop_c1_round_2(message: Message, reply: Message, client_id: str) -> list[Message]:
        lost = client_id == "c1" and message.metadata.message_type == MessageType.TRAIN
        return [] if lost and int(message.content["config"]["server-round"]) == 2 else [reply]

    out = tmp_path / "run"
    clients = ["c0", "c1", "c2"]
    run_federation(FakeFederation(clients, tamper=drop_c1_round_2),
                   RunConfig(num_clients=3, rounds=2, out=str(out), **config).validated())
    return out


@pytest.mark.parametrize("dp", ["record", "client"])
def test_round_trip_is_faithful(tmp_path: Path, dp: str) -> None:
    out = _fake_run(tmp_path, dp=dp)
    data = load_metrics(out / "metrics.json")
    config = RunConfig(**data["config"])
    again = RunRecord.from_json(config, out, data).to_json()
    assert dumps_metrics(again) == dumps_metrics(data)
    assert data["rounds"][1]["dropouts"]["train"][0]["client_id"] == "c1"


def test_metrics_json_keeps_the_keys_its_readers_use(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Backward compatibility (passes on the old code too, by design): the keys of
    simulations/personalize_run.py, simulations/studies/compare_strategies.py, fedpriv/cli/simulate.py."""
    out = _fake_run(tmp_path, dp="both", client_noise_multiplier=1.0)
    metrics = json.loads((out / "metrics.json").read_text())
    RunConfig(**metrics["config"])  # personalize_run rebuilds the config from it
    last = metrics["rounds"][-1]
    assert {"round", "clients", "upload_bytes", "failures", "rejected"} <= set(last)
    for client in last["clients"]:
        assert {"client_id", "eval_perplexity"} <= set(client)
    for privacy in metrics["privacy"]["record_level"].values():
        assert {"epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "accountant", "last_round"} <= set(privacy)
    assert {"epsilon", "delta", "rounds", "sampling"} <= set(metrics["privacy"]["client_level"])
    assert metrics["privacy"]["mode"] == "both"
    assert all(isinstance(v, int) for r in metrics["rounds"] for v in r["upload_bytes"].values())
    print_summary(out, load_metrics(out / "metrics.json"))
    assert "client-level ε" in capsys.readouterr().out
