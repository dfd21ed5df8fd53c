"""`fedpriv personalize --device`: a real device (node config data-path + state-dir) keeps the last
global adapter it received and the run config, and personalizes from them after the federation,
paying from its own ledger. No Ray: the ClientApp is called with messages built here."""

from __future__ import annotations

import json

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from safetensors.torch import load_file

from client.client_app import app as client_app
from client.device import GLOBAL_ADAPTER_FILE, LEDGER_FILE, PERSONALIZED_FILE, PRIVATE_FILE, RUN_CONFIG_FILE, DeviceFolder
from client.privacy_ledger import PrivacyLedger
from fedpriv.adapter_parts import CONFIG_MODE
from fedpriv.cli import main
from fedpriv.config import RunConfig
from fedpriv.released import DECLARATION
from fedpriv.modeling import initial_adapter_state
from simulations.synthetic import generate_federation, write_federation
from tests.fakes import ensure_task_identity

CLIENT = "hospital-00-cardiology"


def _data_file(tmp_path):
    write_federation(tmp_path / "data", generate_federation("hospital", 1, 24, seed=1))
    (path,) = (tmp_path / "data").glob("*.jsonl")
    assert path.stem == CLIENT
    return path


def _config(**overrides) -> RunConfig:
    values = dict(rounds=1, local_epochs=1, finetune_epochs=1, batch_size=8, max_seq_len=32, learning_rate=2e-2, dp="none", seed=0, dp_scope="all")
    values.update(overrides)
    return RunConfig(**values).validated()


def _global_adapter(config: RunConfig) -> dict[str, torch.Tensor]:
    """A global adapter that is not the base model: B moved off its zero init."""
    generator = torch.Generator().manual_seed(0)
    return {k: v + 0.02 * torch.randn(v.shape, generator=generator) if "lora_B" in k else v for k, v in initial_adapter_state(config).items()}


def _message(config: RunConfig, arrays: dict, server_round: int, kind: str = "train", mode: str | None = None) -> Message:
    ensure_task_identity()  # Message() outside a Flower process needs a run/node identity
    values = {**config.to_flower(), "server-round": server_round, **({CONFIG_MODE: mode} if mode else {})}
    return Message(RecordDict({"arrays": ArrayRecord(arrays), "config": ConfigRecord(values)}), dst_node_id=1, message_type=kind)


def _device_context(data_file, state_dir=None) -> Context:
    node = {"data-path": str(data_file), **({"state-dir": str(state_dir)} if state_dir else {})}
    return Context(run_id=7, node_id=1, node_config=node, state=RecordDict(), run_config={})


def _federate(config: RunConfig, data_file, state_dir, mode: str | None = None) -> tuple[dict, Message]:
    """One round as a real device sees it: train on the global, then evaluate the aggregate (with one
    device, its own update). Returns the global the device received last, and the train reply."""
    context = _device_context(data_file, state_dir)
    reply = client_app(_message(config, _global_adapter(config), 1, "train", mode), context)
    assert not reply.has_error(), reply.error
    aggregate = reply.content["arrays"].to_torch_state_dict()
    evaluated = client_app(_message(config, aggregate, 1, "evaluate", mode), context)
    assert not evaluated.has_error(), evaluated.error
    return aggregate, reply


@pytest.mark.parametrize(("mode", "roles"), [("fedavg", {"lora_A", "lora_B"}), ("fedsa", {"lora_A"})])
def test_device_keeps_exactly_the_global_adapter_it_received_and_the_config(tmp_path, mode, roles):
    data_file, state_dir = _data_file(tmp_path), tmp_path / "state"
    config = _config()
    sent = _global_adapter(config)
    if mode == "fedsa":
        sent = {k: v for k, v in sent.items() if "lora_A" in k}  # the server sends a fedsa device only A
    reply = client_app(_message(config, sent, 1, "train", mode), _device_context(data_file, state_dir))
    assert not reply.has_error(), reply.error
    assert set(reply.content.keys()) == {"arrays", "metrics", "client", DECLARATION}  # nothing new sent to the server

    folder = state_dir / CLIENT
    kept = DeviceFolder(folder).load_received_global().state
    assert set(kept) == set(sent) and {role for role in ("lora_A", "lora_B") if any(role in k for k in kept)} == roles
    assert all(torch.equal(kept[k], sent[k]) for k in sent)
    trained = reply.content["arrays"].to_torch_state_dict()
    assert any(not torch.equal(kept[k], trained[k]) for k in trained)  # the received global, not the device's update

    received = DeviceFolder(folder).load_received_global()
    assert received.instruction.config == config  # the run config round-trips through RunConfig.from_flower
    assert (received.instruction.plan.mode, received.instruction.server_round, received.message_type) == (mode, 1, "train")
    assert received.rounds_aggregated == 0  # sent with round 1's training: before any aggregation
    assert json.loads((folder / RUN_CONFIG_FILE).read_text())["run_id"] == 7
    assert (folder / PRIVATE_FILE).is_file() == (mode == "fedsa")

    # The evaluate message of the same round carries the aggregate: it replaces the kept global.
    aggregate = {k: v + 1.0 for k, v in trained.items()}
    assert not client_app(_message(config, aggregate, 1, "evaluate", mode), _device_context(data_file, state_dir)).has_error()
    kept = DeviceFolder(folder).load_received_global().state
    assert set(kept) == set(aggregate) and all(torch.equal(kept[k], aggregate[k]) for k in aggregate)
    assert DeviceFolder(folder).load_received_global().rounds_aggregated == 1
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_device_without_state_dir_keeps_nothing(tmp_path):
    data_file = _data_file(tmp_path)
    config = _config()
    reply = client_app(_message(config, _global_adapter(config), 1), _device_context(data_file))
    assert not reply.has_error(), reply.error
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [f"data/{CLIENT}.jsonl"]


def test_personalize_device_fine_tunes_under_dp_within_the_budget(tmp_path, capsys):
    data_file, state_dir = _data_file(tmp_path), tmp_path / "state"
    config = _config(dp="record", target_epsilon=8.0, accountant="rdp")
    global_state, _ = _federate(config, data_file, state_dir)
    folder = state_dir / CLIENT
    before = PrivacyLedger.load(folder / LEDGER_FILE, "rdp")
    eps_before = before.epsilon(config.delta)
    assert 0 < eps_before < 8.0

    assert main(["personalize", "--device", str(state_dir), "--data", str(data_file)]) == 0
    out = capsys.readouterr().out
    assert CLIENT in out and str(folder / "personalization.json") in out.replace("\n", "")

    saved = load_file(str(folder / PERSONALIZED_FILE))
    assert set(saved) == set(global_state)  # an adapter, nothing else
    assert any(not torch.equal(saved[k], global_state[k]) for k in saved)  # fine-tuning changed it
    after = PrivacyLedger.load(folder / LEDGER_FILE, "rdp")
    # Continued, not restarted: the round's steps plus one fine-tuning epoch (as many steps), same sigma.
    assert after.steps == 2 * before.steps > 0
    assert {sigma for sigma, _, _ in after.history} == {sigma for sigma, _, _ in before.history}
    summary = json.loads((folder / "personalization.json").read_text())
    r = summary["clients"][CLIENT]
    assert r["epsilon"] == pytest.approx(after.epsilon(config.delta))
    assert eps_before < r["epsilon"] <= 8.0 + 1e-9
    assert r["dp_steps"] == after.steps
    assert (summary["strategy"], summary["finetune_epochs"], summary["delta"], summary["target_epsilon"]) == ("fedavg", 1, config.delta, 8.0)
    assert summary["global_adapter"]["rounds_aggregated"] == summary["global_adapter"]["rounds"] == 1
    assert r["finetuned_perplexity"] != pytest.approx(r["federated_perplexity"], rel=1e-6)


def test_dp_device_that_cannot_afford_the_fine_tuning_refuses_and_writes_nothing(tmp_path, capsys):
    data_file, state_dir = _data_file(tmp_path), tmp_path / "state"
    # The federation reserved no fine-tuning: sigma was calibrated to spend the whole budget in round 1.
    config = _config(dp="record", target_epsilon=2.0, accountant="rdp", finetune_epochs=0)
    _federate(config, data_file, state_dir)
    folder = state_dir / CLIENT
    ledger_bytes = (folder / LEDGER_FILE).read_bytes()
    files_before = sorted(p.name for p in folder.iterdir())

    assert main(["personalize", "--device", str(state_dir), "--data", str(data_file), "--finetune-epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "privacy budget spent" in err and "target-epsilon 2.0" in err
    assert (folder / LEDGER_FILE).read_bytes() == ledger_bytes
    assert sorted(p.name for p in folder.iterdir()) == files_before  # no adapter, no personalization.json


@pytest.fixture()
def kept_device(tmp_path):
    """A device folder as the ClientApp leaves it (written with the same Device helper, no training)."""
    from client.device import Device
    from fedpriv.data import split_client_file

    data_file, state_dir = _data_file(tmp_path), tmp_path / "state"
    config = _config()
    device = Device(split=split_client_file(data_file, config.eval_fraction, config.seed), state_dir=state_dir)
    device.save_received_global(_global_adapter(config), {**config.to_flower(), "server-round": 1}, "evaluate", 7)
    return data_file, state_dir


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give exactly one: RUN_DIR"),
        (["RUN", "--device", "STATE", "--data", "DATA"], "give exactly one: RUN_DIR"),
        (["--device", "STATE"], "--data: --device needs the device's data file"),
        (["RUN", "--data", "DATA"], "--data: only applies with --device"),
        (["--device", "STATE", "--data", "DATA", "--clients", CLIENT], "--clients: selects devices of a simulated run"),
        (["--device", "{tmp}/nowhere", "--data", "DATA"], "nowhere: state directory not found"),
        (["--device", "{tmp}/data", "--data", "DATA"], "no global adapter persisted for any device; run the federation first with state-dir set"),
        (["--device", "STATE", "--data", "DATA", "--client-id", "nobody"], "nobody: no global adapter persisted"),
        (["--device", "STATE", "--data", "{tmp}/missing.jsonl"], "missing.jsonl: data file not found"),
        (["--device", "STATE", "--data", "DATA", "--global-weight", "2"], "global-weight"),
        (["--device", "STATE", "--data", "DATA", "--finetune-epochs", "0"], "finetune-epochs: must be at least 1"),
    ],
)
def test_bad_inputs_are_named(kept_device, tmp_path, capsys, args, message):
    data_file, state_dir = kept_device
    names = {"STATE": str(state_dir), "DATA": str(data_file), "RUN": str(tmp_path / "run")}
    argv = ["personalize", *(names.get(a, a.replace("{tmp}", str(tmp_path))) for a in args)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(state_dir.rglob(PERSONALIZED_FILE)) and not list(state_dir.rglob("personalization.json"))


def test_several_devices_need_a_client_id(kept_device, capsys):
    data_file, state_dir = kept_device
    other = state_dir / "hospital-01-oncology"
    other.mkdir()
    for name in (GLOBAL_ADAPTER_FILE, RUN_CONFIG_FILE):
        (other / name).write_bytes((state_dir / CLIENT / name).read_bytes())
    assert main(["personalize", "--device", str(state_dir), "--data", str(data_file)]) == 2
    err = capsys.readouterr().err
    assert "client-id" in err and CLIENT in err and "hospital-01-oncology" in err


def test_under_dp_scope_uploads_the_federation_spends_the_budget_and_the_fine_tuning_is_not_charged(tmp_path, capsys):
    data_file, state_dir = _data_file(tmp_path), tmp_path / "state"
    config = _config(dp="record", target_epsilon=4.0, accountant="rdp", dp_scope="uploads")
    global_state, _ = _federate(config, data_file, state_dir)
    folder = state_dir / CLIENT
    ledger_bytes = (folder / LEDGER_FILE).read_bytes()
    spent = PrivacyLedger.load(folder / LEDGER_FILE, "rdp").epsilon(config.delta)
    assert 0.9 * 4.0 < spent <= 4.0 + 1e-9  # the one round took (nearly) all of it: nothing was kept back for fine-tuning

    assert main(["personalize", "--device", str(state_dir), "--data", str(data_file)]) == 0
    assert (folder / LEDGER_FILE).read_bytes() == ledger_bytes  # the on-device fine-tuning spent nothing
    saved = load_file(str(folder / PERSONALIZED_FILE))
    assert any(not torch.equal(saved[k], global_state[k]) for k in saved if k in global_state)  # yet it trained
    row = json.loads((folder / "personalization.json").read_text())["clients"][CLIENT]
    assert row["epsilon"] == pytest.approx(spent)  # reported: what the uploads spent
    assert row["selected_on_validation"] is True  # epochs and λ chosen on validation, as without DP


def test_personalize_opens_the_sealed_files_with_the_devices_own_key(tmp_path, capsys):
    """The same road as the ClientApp: a fedsa device whose key lives outside its state directory
    (node config device-key) personalizes with that key, and is refused without it."""
    data_file, state_dir, key = _data_file(tmp_path), tmp_path / "state", tmp_path / "keys" / "fedpriv.key"
    config = _config(validation_fraction=0.0)
    node = {"data-path": str(data_file), "state-dir": str(state_dir), "device-key": str(key)}
    sent = {k: v for k, v in _global_adapter(config).items() if "lora_A" in k}
    reply = client_app(_message(config, sent, 1, "train", "fedsa"), Context(run_id=7, node_id=1, node_config=node, state=RecordDict(), run_config={}))
    assert not reply.has_error(), reply.error
    folder = state_dir / CLIENT
    before = sorted(p.name for p in folder.iterdir())

    assert main(["personalize", "--device", str(state_dir), "--data", str(data_file)]) == 2
    assert "device key missing" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == before  # no key made, nothing written

    assert main(["personalize", "--device", str(state_dir), "--data", str(data_file), "--device-key", str(key)]) == 0
    row = json.loads((folder / "personalization.json").read_text())["clients"][CLIENT]
    assert row["finetune_epochs"] == 1 and row["finetuned_perplexity"] != pytest.approx(row["federated_perplexity"], rel=1e-6)
