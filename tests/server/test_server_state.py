"""Restart safety: kill the server after round 2 of 4, resume, and get the uninterrupted run's result
bit for bit. The resumed server runs under new node ids (as a new Flower run does) with the same
devices, whose ledgers continue; the checkpoint is written so a crash never leaves a torn one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

import server.server_state as server_state
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from server.run_record import load_metrics
from server.server_app import run_federation
from server.server_state import STATE_DIR, load_server_state, state_path
from simulations.simulate import resume_config
from tests.server.fake_federation import FakeFederation

PHONES = [f"phone-{i:02d}" for i in range(8)]
HOSPITALS = ["h0", "h1", "h2", "h3"]


class ServerKilled(Exception):
    pass


def _kill_after(last: int):
    def on_round_end(server_round: int) -> None:
        if server_round == last:
            raise ServerKilled(f"killed after round {server_round}")
    return on_round_end


SETTINGS = {
    "hospital fedavg, record-level DP": dict(profile="hospital"),
    "phone ffa, client-level DP, Poisson sampling": dict(profile="phone"),
    "phone hetlora, sampled, record-level DP": dict(profile="phone", dp="record", strategy="hetlora",
                                                    client_ranks="phone-00=2,phone-03=4,phone-05=16", lora_rank=8),
    "hospital fedsa, no DP": dict(profile="hospital", strategy="fedsa", dp="none"),
}


def _config(out: Path, clients: list[str], **settings) -> RunConfig:
    return RunConfig(num_clients=len(clients), rounds=4, out=str(out), **settings).validated()


def _final(out: Path) -> dict:
    return load_file(str(out / "adapters" / "final" / "adapter_model.safetensors"))


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_resume_after_round_2_of_4_gives_the_uninterrupted_result(tmp_path: Path, name: str) -> None:
    settings = SETTINGS[name]
    clients = PHONES if settings["profile"] == "phone" else HOSPITALS
    reference = tmp_path / "uninterrupted"
    run_federation(FakeFederation(clients, node_seed=1, profile=settings["profile"]), _config(reference, clients, **settings))

    run = tmp_path / "run"
    ledgers: dict[str, int] = {}  # the devices' state-dirs: they outlive the server
    with pytest.raises(ServerKilled):
        run_federation(FakeFederation(clients, node_seed=2, ledgers=ledgers, profile=settings["profile"]),
                       _config(run, clients, **settings), on_round_end=_kill_after(2))
    assert load_server_state(run).completed_round == 2 and not (run / "report.md").exists()
    assert len(load_metrics(run / "metrics.json")["rounds"]) == 2

    resumed = FakeFederation(clients, node_seed=3, ledgers=ledgers, profile=settings["profile"])  # new node ids
    run_federation(resumed, resume_config(run))

    expected, got = _final(reference), _final(run)
    assert list(got) == list(expected)
    for key in expected:
        assert got[key].equal(expected[key]), key  # bit for bit
    ref_metrics, run_metrics = load_metrics(reference / "metrics.json"), load_metrics(run / "metrics.json")
    assert run_metrics["privacy"] == ref_metrics["privacy"]  # record-level and client-level ε
    assert [r["clients"] for r in run_metrics["rounds"]] == [r["clients"] for r in ref_metrics["rounds"]]
    assert [r["upload_bytes"] for r in run_metrics["rounds"]] == [r["upload_bytes"] for r in ref_metrics["rounds"]]
    assert run_metrics["resumes"][0]["from_round"] == 3
    # Only rounds 3 and 4 were trained after the restart (the resumed server identified, then trained).
    assert {int(m.content["config"]["server-round"]) for m in resumed.sent if m.metadata.message_type == "train"} == {3, 4}
    assert "Resumed from its checkpoint at round 3" in (run / "report.md").read_text()


def test_a_crash_while_checkpointing_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    real_write = server_state.write_atomically

    def disk_full_at_round_2(path: Path, data) -> None:
        if path.name == "state.json" and b'"completed_round": 2' in (data.encode() if isinstance(data, str) else data):
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(server_state, "write_atomically", disk_full_at_round_2)
    with pytest.raises(OSError, match="No space left"):
        run_federation(FakeFederation(HOSPITALS), _config(run, HOSPITALS))
    saved = load_server_state(run)
    assert saved.completed_round == 1  # the commit point of round 2 was never written
    assert sorted(p.name for p in (run / STATE_DIR).iterdir()) == ["global-001.safetensors", "global-002.safetensors", "state.json"]


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="resume: .*no server checkpoint"):
        run_federation(FakeFederation(HOSPITALS), RunConfig(num_clients=4, out=str(run), resume=True).validated())
    with pytest.raises(ServerKilled):
        run_federation(FakeFederation(HOSPITALS), _config(run, HOSPITALS), on_round_end=_kill_after(1))
    with pytest.raises(ConfigError, match="out: .*holds a run's checkpoint"):  # a fresh run would overwrite it
        run_federation(FakeFederation(HOSPITALS), _config(run, HOSPITALS))

    adapter = next((run / STATE_DIR).glob("global-*.safetensors"))
    original = adapter.read_bytes()
    adapter.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ConfigError, match="does not match the checksum"):
        load_server_state(run)
    adapter.write_bytes(original)

    state = json.loads(state_path(run).read_text())
    state_path(run).write_text(json.dumps({**state, "format": 99}))
    with pytest.raises(ConfigError, match="checkpoint format 99"):
        load_server_state(run)
    state_path(run).write_text(json.dumps(state))

    run_federation(FakeFederation(HOSPITALS), resume_config(run))
    with pytest.raises(ConfigError, match="finished all 4 rounds"):
        resume_config(run)


def test_a_resumed_flwr_run_keeps_its_recorded_settings(tmp_path: Path) -> None:
    """`flwr run` resumes with `resume=true out=RUN_DIR` and whatever else its run config says:
    the recorded settings win, so a forgotten override cannot change the run halfway."""
    run = tmp_path / "run"
    with pytest.raises(ServerKilled):
        run_federation(FakeFederation(HOSPITALS), _config(run, HOSPITALS, seed=7, lora_rank=4), on_round_end=_kill_after(2))
    record = run_federation(FakeFederation(HOSPITALS, node_seed=5),
                            RunConfig(num_clients=4, out=str(run), resume=True, rounds=3).validated())
    assert record.config.seed == 7 and record.config.lora_rank == 4 and record.config.rounds == 4
    assert [r["round"] for r in load_metrics(run / "metrics.json")["rounds"]] == [1, 2, 3, 4]
