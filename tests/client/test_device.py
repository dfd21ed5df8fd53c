"""A device that no input can break: a deleted or older ledger, a data-path without a valid client
id, a huge record, a lost or wrong device key. Each gets an error reply naming what is wrong (the
server records it), and the ledger and the device's files stay as they were. No Ray: the ClientApp
is called with messages built here, each call a SuperNode as it runs after a restart when the
Context is new."""

from __future__ import annotations

import json

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

from client.client_app import app as client_app
from client.device import GLOBAL_ADAPTER_FILE, LEDGER_FILE, MANIFEST_FILE, PRIVATE_FILE, DeviceFolder
from client.device_key import KEY_FILE, DeviceKey
from client.dp_training import encode, evaluated_text_bytes
from fedpriv.adapter_parts import CONFIG_MODE
from fedpriv.config import RunConfig
from fedpriv.data import MAX_CHARS_PER_TOKEN
from fedpriv.errors import DataError
from fedpriv.modeling import initial_adapter_state, load_tokenizer
from simulations.synthetic import generate_federation, write_federation
from tests.fakes import ensure_task_identity

CLIENT = "hospital-00-cardiology"


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_federation(folder, generate_federation("hospital", 1, 24, seed=1))
    (path,) = folder.glob("*.jsonl")
    assert path.stem == CLIENT
    return path


def _config(**overrides) -> RunConfig:
    values = dict(rounds=2, local_epochs=1, batch_size=8, max_seq_len=32, dp="record", accountant="rdp", seed=0)
    values.update(overrides)
    return RunConfig(**values).validated()


def _message(config: RunConfig, arrays: dict, server_round: int, kind: str = "train", mode: str | None = None) -> Message:
    ensure_task_identity()  # Message() outside a Flower process needs a run/node identity
    values = {**config.to_flower(), "server-round": server_round, **({CONFIG_MODE: mode} if mode else {})}
    return Message(RecordDict({"arrays": ArrayRecord(arrays), "config": ConfigRecord(values)}), dst_node_id=1, message_type=kind)


def _context(data_path, state_dir, **node) -> Context:
    return Context(run_id=3, node_id=1, node_config={"data-path": str(data_path), "state-dir": str(state_dir), **node},
                   state=RecordDict(), run_config={})


def _refused(reply: Message, *fragments: str) -> None:
    assert reply.has_error() and not reply.has_content(), "the device must refuse with an error reply"
    for fragment in fragments:
        assert fragment in reply.error.reason, reply.error.reason


def _snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_restarted_device_continues_its_epsilon_and_refuses_past_its_budget(data_file, tmp_path):
    state = tmp_path / "state"
    config = _config(rounds=2, target_epsilon=3.0)
    first = client_app(_message(config, initial_adapter_state(config), 1), _context(data_file, state))
    assert not first.has_error(), first.error
    steps = first.content["metrics"]["steps"]
    # The SuperNode restarts: a new Context, no node state; the ledger in state-dir carries on.
    second = client_app(_message(config, first.content["arrays"].to_torch_state_dict(), 2), _context(data_file, state))
    assert not second.has_error(), second.error
    assert second.content["metrics"]["steps"] == 2 * steps
    assert second.content["metrics"]["epsilon"] > first.content["metrics"]["epsilon"]
    # σ was calibrated for two rounds: a third would pass the budget, after another restart too.
    kept = _snapshot(state / CLIENT)
    third = client_app(_message(config, second.content["arrays"].to_torch_state_dict(), 3), _context(data_file, state))
    _refused(third, "privacy budget spent", "target-epsilon 3.0")
    assert _snapshot(state / CLIENT)[LEDGER_FILE] == kept[LEDGER_FILE]


def test_deleted_ledger_is_refused_not_restarted_at_zero(data_file, tmp_path):
    state = tmp_path / "state"
    config = _config()
    context = _context(data_file, state)
    first = client_app(_message(config, initial_adapter_state(config), 1), context)
    assert not first.has_error(), first.error
    steps = first.content["metrics"]["steps"]
    folder = state / CLIENT
    (folder / LEDGER_FILE).unlink()
    arrays = first.content["arrays"].to_torch_state_dict()
    # After a restart the manifest still says what was spent ...
    _refused(client_app(_message(config, arrays, 2), _context(data_file, state)), "privacy ledger missing", f"{steps} DP-SGD steps")
    assert not (folder / LEDGER_FILE).exists()
    # ... and without the manifest, the running SuperNode's node state does.
    (folder / MANIFEST_FILE).unlink()
    _refused(client_app(_message(config, arrays, 2), context), "privacy ledger missing", "node state")
    assert not (folder / LEDGER_FILE).exists()


def test_an_older_copy_of_the_ledger_is_refused(data_file, tmp_path):
    state = tmp_path / "state"
    config = _config()
    first = client_app(_message(config, initial_adapter_state(config), 1), _context(data_file, state))
    ledger = state / CLIENT / LEDGER_FILE
    after_round_1 = ledger.read_bytes()
    second = client_app(_message(config, first.content["arrays"].to_torch_state_dict(), 2), _context(data_file, state))
    assert not second.has_error(), second.error
    ledger.write_bytes(after_round_1)  # "restored from last week's backup"
    _refused(client_app(_message(config, second.content["arrays"].to_torch_state_dict(), 3), _context(data_file, state)),
             "an older copy")
    assert ledger.read_bytes() == after_round_1


@pytest.mark.parametrize("name", ["...jsonl", "..jsonl", ".hidden.jsonl", "a b.jsonl"])
def test_data_path_without_a_valid_client_id_is_refused(data_file, tmp_path, name):
    bad = tmp_path / "data" / name
    bad.parent.mkdir()
    bad.write_bytes(data_file.read_bytes())
    state = tmp_path / "deep" / "state"
    config = _config()
    reply = client_app(_message(config, initial_adapter_state(config), 1), _context(bad, state))
    _refused(reply, "client id", name)
    assert not (tmp_path / "deep").exists()  # nothing written, inside state-dir or next to it


def test_huge_record_is_cut_before_the_tokenizer_sees_it():
    tokenizer = load_tokenizer("default")
    seen: list[int] = []

    def spy(texts, **kwargs):
        seen.extend(len(t) for t in ([texts] if isinstance(texts, str) else texts))
        return tokenizer(texts, **kwargs)

    normal = " ".join(f"patient {i} reports mild pain and takes {i % 7} tablets daily." for i in range(400))  # ~25k characters
    huge = normal * 2000  # ~50 MB
    encoded = encode(spy, [huge, "short note"], max_seq_len=32)
    assert max(seen) == 32 * MAX_CHARS_PER_TOKEN  # the tokenizer never got the 50 MB
    # The cut changes nothing: the same tokens as tokenizing the whole (normal-sized) text.
    whole = tokenizer([normal], max_length=32, truncation=True, padding="max_length", return_tensors="pt")
    assert torch.equal(encoded.tensors[0][0], whole["input_ids"][0])
    assert torch.equal(encode(tokenizer, [normal], 32).tensors[0][0], whole["input_ids"][0])
    # The held-out bits per byte count the same bytes, and never tokenize the whole record either.
    seen.clear()
    assert evaluated_text_bytes(spy, [huge], 32) == evaluated_text_bytes(tokenizer, [normal], 32) > 0
    assert max(seen) == 32 * MAX_CHARS_PER_TOKEN


def test_kept_adapters_are_sealed_with_a_0600_device_key(data_file, tmp_path):
    state = tmp_path / "state"
    config = _config(dp="none", rounds=1)
    sent = {k: v for k, v in initial_adapter_state(config).items() if "lora_A" in k}  # fedsa: the server sends A only
    reply = client_app(_message(config, sent, 1, mode="fedsa"), _context(data_file, state))
    assert not reply.has_error(), reply.error
    folder = state / CLIENT
    assert (folder / KEY_FILE).stat().st_mode & 0o777 == 0o600
    for name in (PRIVATE_FILE, GLOBAL_ADAPTER_FILE):
        blob = (folder / name).read_bytes()
        assert blob.startswith(b"fedpriv-sealed-v1\n") and b"lora_" not in blob  # no tensor name, no safetensors header
    kept = DeviceFolder(folder)
    assert set(kept.load_private()) == {k.replace("lora_A", "lora_B") for k in sent}
    assert all(torch.equal(kept.load_received_global().state[k], sent[k]) for k in sent)


def _fedsa_device(data_file, state, **node):
    """A fedsa device after one round: its sealed lora_B and the A it received."""
    config = _config(dp="none", rounds=2)
    sent = {k: v for k, v in initial_adapter_state(config).items() if "lora_A" in k}
    reply = client_app(_message(config, sent, 1, mode="fedsa"), _context(data_file, state, **node))
    assert not reply.has_error(), reply.error
    return config, reply.content["arrays"].to_torch_state_dict()


def test_missing_or_wrong_device_key_is_refused_never_a_new_start(data_file, tmp_path):
    state = tmp_path / "state"
    config, arrays = _fedsa_device(data_file, state)
    folder = state / CLIENT
    key = folder / KEY_FILE
    original = key.read_bytes()
    key.unlink()
    before = _snapshot(folder)
    _refused(client_app(_message(config, arrays, 2, mode="fedsa"), _context(data_file, state)), "device key missing", PRIVATE_FILE)
    assert _snapshot(folder) == before and not key.exists()  # no new key made, nothing rewritten

    key.write_text("fedpriv-device-key-v1 not-base64!\n")
    _refused(client_app(_message(config, arrays, 2, mode="fedsa"), _context(data_file, state)), "not a readable fedpriv device key")

    key.unlink()
    DeviceKey.create(key)  # a valid key, but not the one the files were sealed with
    _refused(client_app(_message(config, arrays, 2, mode="fedsa"), _context(data_file, state)), "cannot be opened with the device key")
    assert _snapshot(folder)[PRIVATE_FILE] == before[PRIVATE_FILE]

    key.unlink()
    key.write_bytes(original)  # the right key back: the device carries on where it was
    assert not client_app(_message(config, arrays, 2, mode="fedsa"), _context(data_file, state)).has_error()


def test_deleted_private_part_is_refused(data_file, tmp_path):
    state = tmp_path / "state"
    config, arrays = _fedsa_device(data_file, state)
    (state / CLIENT / PRIVATE_FILE).unlink()
    _refused(client_app(_message(config, arrays, 2, mode="fedsa"), _context(data_file, state)), "private adapter part is missing")


def test_device_key_named_in_the_node_config_lives_outside_the_state_dir(data_file, tmp_path):
    state, key = tmp_path / "state", tmp_path / "keys" / "fedpriv.key"
    _fedsa_device(data_file, state, **{"device-key": str(key)})
    assert key.is_file() and key.stat().st_mode & 0o777 == 0o600
    assert not (state / CLIENT / KEY_FILE).exists()
    manifest = json.loads((state / CLIENT / MANIFEST_FILE).read_text())
    assert manifest["sealed"] == sorted([GLOBAL_ADAPTER_FILE, PRIVATE_FILE])
    assert DeviceFolder(state / CLIENT, key).load_private() is not None
    with pytest.raises(DataError, match="device key missing"):
        DeviceFolder(state / CLIENT).load_private()  # the folder's default key does not exist: refused, not made
