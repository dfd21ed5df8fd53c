"""The ClientApp on the shipped default model: what leaves the device, and what epsilon it reports."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

from client.client_app import app as client_app
from client.dp_training import encode, evaluate, train_locally
from client.privacy_ledger import PrivacyLedger
from fedpriv.config import RunConfig
from fedpriv.device_log import read_entries
from fedpriv.released import DECLARATION, UNCOVERED, released_fields
from fedpriv.modeling import adapter_state, build_lora_model, initial_adapter_state, load_base_model, load_tokenizer, state_num_bytes
from simulations.synthetic import generate_federation, write_federation
from tests.fakes import ensure_task_identity

REQUIRED_METRICS = {"num-examples", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "learning_rate"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    write_federation(path, generate_federation("hospital", num_clients=2, records_per_client=60, seed=3))
    return path


def _config(data_dir, **overrides) -> RunConfig:
    values = {"data_dir": str(data_dir), "num_clients": 2, "rounds": 3, "records_per_client": 60}
    values.update(overrides)
    return RunConfig(**values).validated()


def _instruction(config: RunConfig, arrays: ArrayRecord, server_round: int, kind: str = "train") -> Message:
    ensure_task_identity()  # Message() outside a Flower process needs a run/node identity
    record = ConfigRecord({**config.to_flower(), "server-round": server_round})
    return Message(RecordDict({"arrays": arrays, "config": record}), dst_node_id=1, message_type=kind)


def _context() -> Context:
    return Context(run_id=1, node_id=1, node_config={"partition-id": 0, "num-partitions": 2}, state=RecordDict(), run_config={})


def test_reply_carries_only_the_trainable_lora_tensors(data_dir) -> None:
    config = _config(data_dir)
    initial = ArrayRecord(initial_adapter_state(config))
    reply = client_app(_instruction(config, initial, 1), _context())
    assert not reply.has_error(), reply.error
    assert set(reply.content.keys()) == {"arrays", "metrics", "client", DECLARATION}
    sent = reply.content["arrays"].to_torch_state_dict()
    model = build_lora_model(config)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert len(sent) == len(trainable) > 0
    assert all("lora_A" in k or "lora_B" in k for k in sent)
    base_keys = set(load_base_model(config.model).state_dict())
    assert not any(k.split("base_model.model.", 1)[-1] in base_keys for k in sent)  # no base weight under any name
    base_bytes = sum(p.numel() * p.element_size() for p in load_base_model(config.model).parameters())
    assert state_num_bytes(sent) < 0.05 * base_bytes
    assert REQUIRED_METRICS <= set(reply.content["metrics"].keys())
    first_file = sorted(p.stem for p in data_dir.glob("*.jsonl"))[0]
    assert reply.content["client"]["client-id"] == first_file
    assert reply.content["client"]["server-round"] == 1


def test_epsilon_reported_after_three_rounds_covers_all_three(data_dir) -> None:
    config = _config(data_dir)
    context = _context()
    arrays = ArrayRecord(initial_adapter_state(config))
    metrics = []
    for server_round in (1, 2, 3):
        reply = client_app(_instruction(config, arrays, server_round), context)
        assert not reply.has_error(), reply.error
        metrics.append(reply.content["metrics"])
        arrays = reply.content["arrays"]
    per_round = metrics[0]["steps"]
    assert [m["steps"] for m in metrics] == [per_round, 2 * per_round, 3 * per_round]
    one_accountant = PrivacyLedger(history=[(config.noise_multiplier, metrics[0]["sample_rate"], 3 * per_round)])
    assert metrics[2]["epsilon"] == pytest.approx(one_accountant.epsilon(config.delta), rel=1e-6)
    assert metrics[0]["epsilon"] < metrics[1]["epsilon"] < metrics[2]["epsilon"]


def test_no_dp_reports_no_epsilon(data_dir) -> None:
    config = _config(data_dir, dp="none")
    reply = client_app(_instruction(config, ArrayRecord(initial_adapter_state(config)), 1), _context())
    assert not reply.has_error(), reply.error
    keys = set(reply.content["metrics"].keys())
    assert not keys & {"epsilon", "delta", "noise_multiplier", "steps"}
    assert {"train_loss", "num-examples"} <= keys


def test_spent_budget_stops_training(data_dir, tmp_path) -> None:
    config = _config(data_dir, rounds=1, target_epsilon=2.0, state_dir=str(tmp_path))
    arrays = ArrayRecord(initial_adapter_state(config))
    first = client_app(_instruction(config, arrays, 1), _context())
    assert not first.has_error() and first.content["metrics"]["epsilon"] <= 2.0
    # A fresh Context (a restarted device) still finds the ledger on disk and refuses round 2: an
    # error reply with the reason, which the server records, and no update.
    ledger_file = next(tmp_path.glob("*/privacy_ledger.json"))
    kept = ledger_file.read_bytes()
    refused = client_app(_instruction(config, first.content["arrays"], 2), _context())
    assert refused.has_error() and not refused.has_content()
    assert "privacy budget spent" in refused.error.reason and "target-epsilon 2.0" in refused.error.reason
    assert ledger_file.read_bytes() == kept


def test_dp_training_changes_the_adapter_and_improves_held_out_loss(data_dir) -> None:
    # Guard against opacus#820: DP-LoRA that "trains" but leaves a useless adapter.
    config = _config(data_dir, local_epochs=3, noise_multiplier=1.0)
    tokenizer = load_tokenizer(config.model)
    federation = generate_federation("hospital", num_clients=2, records_per_client=200, seed=3)
    texts = next(iter(federation.values()))
    train_set, held_out = encode(tokenizer, texts[:160], config.max_seq_len), encode(tokenizer, texts[160:], config.max_seq_len)
    model = build_lora_model(config)
    before = adapter_state(model)
    loss_before, _ = evaluate(model, held_out)
    ledger = PrivacyLedger()
    train_locally(model, train_set, config, ledger, seed=0)
    after = adapter_state(model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(torch.isfinite(t).all() for t in after.values())
    assert any("lora_B" in k for k in changed), "B starts at zero; if it never moves the adapter does nothing"
    loss_after, _ = evaluate(model, held_out)
    assert loss_after < loss_before - 0.02, (loss_before, loss_after)
    assert ledger.epsilon(config.delta) > 0


@pytest.mark.parametrize("dp", ["record", "client"])
def test_a_reply_under_dp_carries_no_metric_outside_the_declared_list(data_dir, tmp_path, dp) -> None:
    """Under DP the losses and held-out metrics stay in the device's own log; every field sent is
    declared with a mechanism that covers it."""
    config = _config(data_dir, dp=dp, state_dir=str(tmp_path / "devices"))
    context = _context()
    train = client_app(_instruction(config, ArrayRecord(initial_adapter_state(config)), 1), context)
    evaluation = client_app(_instruction(config, train.content["arrays"], 1, kind="evaluate"), context)
    for reply, kept in ((train, {"train_loss", "start_perplexity"}), (evaluation, {"eval_loss", "eval_perplexity", "eval_bits_per_byte"})):
        assert not reply.has_error(), reply.error
        fields = released_fields(reply.content)
        assert not {f: m for f, m in fields.items() if m in UNCOVERED}, fields
        sent = set(reply.content["metrics"].keys())
        assert sent <= {"num-examples", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "round_steps", "learning_rate"}
        assert not kept & sent
    assert released_fields(train.content)["arrays"] == ("dp-sgd" if dp == "record" else "dp-fedavg")
    if dp == "record":
        assert train.content["client"]["dp-noise-source"]  # the generator of the DP-SGD noise, named
    client_id = train.content["client"]["client-id"]
    logged = read_entries(tmp_path / "devices" / client_id)
    assert [(e["phase"], e["round"]) for e in logged] == [("train", 1), ("evaluate", 1)]
    assert logged[0]["metrics"]["train_loss"] > 0 and logged[1]["metrics"]["eval_perplexity"] > 1


def test_without_dp_everything_is_sent_and_declared_unprotected(data_dir) -> None:
    config = _config(data_dir, dp="none")
    reply = client_app(_instruction(config, ArrayRecord(initial_adapter_state(config)), 1), _context())
    fields = released_fields(reply.content)
    assert "train_loss" in reply.content["metrics"] and fields["metrics.train_loss"] == "none" and fields["arrays"] == "none"
    assert fields["client.client-id"] == "public"
