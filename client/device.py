"""What one device knows about itself: its data, its id, and where its privacy ledger lives.

A real device names its data file and state directory in the SuperNode's node config
(`--node-config "data-path='notes.jsonl' state-dir='/var/lib/fedpriv'"`). In simulation, the node
config carries Flower's `partition-id` and the run config's `data-dir` names the folder of client
files; the simulator also gives each virtual device a state directory so ledgers outlive a restart.

With a state directory, everything the device keeps is in `<state-dir>/<client-id>/`: its privacy
ledger, its private adapter part (fedsa: lora_B), and the last global adapter the server sent with
the instruction it came with, so the device can personalize after the federation on its own
(`fedpriv personalize --device`, `client.personalize.personalize_device`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from safetensors.torch import load_file

from client.privacy_ledger import PrivacyLedger
from fedpriv.adapter_parts import ClientPlan, pop_strategy_config
from fedpriv.config import RunConfig
from fedpriv.data import ClientSplit, load_client, split_client_file
from fedpriv.errors import DataError
from fedpriv.files import write_atomically, write_tensors_atomically

_LEDGER_RECORD = "privacy-ledger"
_PRIVATE_RECORD = "private-adapter"
# File names inside a device's state directory (`<state-dir>/<client-id>/`).
LEDGER_FILE = "privacy_ledger.json"
PRIVATE_FILE = "private_adapter.safetensors"
PERSONALIZED_FILE = "personalized_adapter.safetensors"  # the mixture's private adapter (fedpriv personalize)
GLOBAL_ADAPTER_FILE = "global_adapter.safetensors"  # the last global adapter the server sent, as received
RUN_CONFIG_FILE = "run_config.json"  # ... and the instruction (run config, strategy plan, round) it came with


def device_seed(config: RunConfig, client_id: str, purpose: str) -> int:
    """A 32-bit seed for one piece of this device's training (a round number, "finetune", ...):
    reproducible per (run seed, client, purpose) and different between devices."""
    digest = hashlib.sha256(f"{config.seed}:{client_id}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class Instruction:
    """What the config of a train / evaluate message says: the run config the server runs with,
    the strategy's plan for this device, and the server round."""

    config: RunConfig
    plan: ClientPlan
    server_round: int


def read_instruction(values: Mapping[str, Any]) -> Instruction:
    # The server sends the whole run config with every instruction, so all devices train with the
    # same settings whichever way the federation was started; strategies add their own keys.
    values = dict(values)
    server_round = int(values.pop("server-round"))
    plan = pop_strategy_config(values)
    return Instruction(RunConfig.from_flower(values), plan, server_round)


@dataclass(frozen=True)
class ReceivedGlobal:
    """The last global adapter a device received, as persisted in its folder."""

    state: dict[str, torch.Tensor]  # exactly the tensors the server sent (the shared part only)
    instruction: Instruction
    message_type: str  # "train": the global before that round's training; "evaluate": after its aggregation
    run_id: int | None

    @property
    def rounds_aggregated(self) -> int:
        """How many rounds of the federation this global adapter contains."""
        return self.instruction.server_round - (0 if self.message_type == "evaluate" else 1)


def devices_with_global(state_dir: Path) -> list[str]:
    """Client ids (sub-folders of a state directory) that hold a persisted global adapter."""
    return sorted(p.name for p in Path(state_dir).iterdir() if (p / GLOBAL_ADAPTER_FILE).is_file())


def load_received_global(device_dir: Path) -> ReceivedGlobal:
    """What `Device.save_received_global` left in `device_dir`; DataError if there is nothing."""
    device_dir = Path(device_dir)
    adapter_path, config_path = device_dir / GLOBAL_ADAPTER_FILE, device_dir / RUN_CONFIG_FILE
    if not adapter_path.is_file() or not config_path.is_file():
        raise DataError(
            f"{device_dir}: no global adapter persisted ({GLOBAL_ADAPTER_FILE} and {RUN_CONFIG_FILE}); "
            "run the federation first with state-dir set in the SuperNode's node config"
        )
    try:
        saved = json.loads(config_path.read_text())
        values = dict(saved["instruction"])
        message_type, run_id = str(saved["message_type"]), saved.get("run_id")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{config_path}: not a readable record of the federation's instruction ({err})") from None
    # The federation's data-dir (if any) is not where this device's data is: it names its own file.
    values["data-dir"] = ""
    return ReceivedGlobal(dict(load_file(str(adapter_path))), read_instruction(values), message_type, run_id)


@dataclass
class Device:
    split: ClientSplit
    state_dir: Path | None
    profile: str = ""

    @property
    def client_id(self) -> str:
        return self.split.client_id

    def folder(self) -> Path | None:
        """`<state-dir>/<client-id>/`, where this device keeps its files (None: it keeps none)."""
        return self.state_dir / self.client_id if self.state_dir else None

    def ledger_path(self) -> Path | None:
        folder = self.folder()
        return folder / LEDGER_FILE if folder else None

    def load_ledger(self, context: Context, accountant: str) -> PrivacyLedger:
        path = self.ledger_path()
        if path is not None:
            return PrivacyLedger.load(path, accountant)
        if _LEDGER_RECORD in context.state:
            record = context.state[_LEDGER_RECORD]
            return PrivacyLedger.from_json(str(record["json"]), source="node state")
        return PrivacyLedger(accountant=accountant)

    def save_ledger(self, context: Context, ledger: PrivacyLedger) -> None:
        # Both: node state survives rounds in one run, the file survives process restarts.
        context.state[_LEDGER_RECORD] = ConfigRecord({"json": ledger.to_json()})
        path = self.ledger_path()
        if path is not None:
            ledger.save(path)


    # ---- the adapter part that never leaves the device (fedsa: lora_B) ------------------------

    def _private_path(self) -> Path | None:
        folder = self.folder()
        return folder / PRIVATE_FILE if folder else None

    def load_private_adapter(self, context: Context) -> dict[str, torch.Tensor] | None:
        if _PRIVATE_RECORD in context.state:
            return context.state[_PRIVATE_RECORD].to_torch_state_dict()
        path = self._private_path()
        return load_file(str(path)) if path is not None and path.exists() else None

    def save_private_adapter(self, context: Context, state: dict[str, torch.Tensor]) -> None:
        context.state[_PRIVATE_RECORD] = ArrayRecord({k: v.contiguous() for k, v in state.items()})
        path = self._private_path()
        if path is not None:
            write_tensors_atomically(path, state)

    # ---- the last global adapter received, for personalizing after the federation -------------

    def save_received_global(self, received: Mapping[str, torch.Tensor], instruction: Mapping[str, Any], message_type: str, run_id: int | None) -> None:
        """Keep the global adapter exactly as received and the message config it came with
        (`read_instruction` parses it back), replacing the previous ones. Only with a state dir;
        nothing here is sent anywhere."""
        folder = self.folder()
        if folder is None:
            return
        write_tensors_atomically(folder / GLOBAL_ADAPTER_FILE, received)
        record = {"message_type": message_type, "run_id": run_id, "instruction": dict(instruction)}
        write_atomically(folder / RUN_CONFIG_FILE, json.dumps(record, indent=2))


def open_device(context: Context, config: RunConfig) -> Device:
    node = context.node_config
    state_dir = node.get("state-dir") or config.state_dir
    if "data-path" in node:
        path = Path(str(node["data-path"]))
        if not path.is_file():
            raise DataError(f"node config data-path: file not found: {path}")
        split = split_client_file(path, config.eval_fraction, config.seed)
    elif config.data_dir:
        if "partition-id" not in node:
            raise DataError("node config has neither data-path nor partition-id: cannot find this device's data")
        split = load_client(Path(config.data_dir), int(node["partition-id"]), config.eval_fraction, config.seed)
    else:
        raise DataError("no data for this device: set data-path in the node config or data-dir in the run config")
    profile = str(node.get("profile", config.profile))
    return Device(split=split, state_dir=Path(str(state_dir)) if state_dir else None, profile=profile)
