"""What one device knows about itself: its data, its id, and where its privacy ledger lives.

A real device names its data file and state directory in the SuperNode's node config
(`--node-config "data-path='notes.jsonl' state-dir='/var/lib/fedpriv'"`). In simulation, the node
config carries Flower's `partition-id` and the run config's `data-dir` names the folder of client
files; the simulator also gives each virtual device a state directory so ledgers outlive a restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from safetensors.torch import load_file, save_file

from client.privacy_ledger import PrivacyLedger
from fedpriv.config import RunConfig
from fedpriv.data import ClientSplit, load_client, split_client_file
from fedpriv.errors import DataError

_LEDGER_RECORD = "privacy-ledger"
_PRIVATE_RECORD = "private-adapter"
# File names inside a device's state directory (`<state-dir>/<client-id>/`).
LEDGER_FILE = "privacy_ledger.json"
PRIVATE_FILE = "private_adapter.safetensors"
PERSONALIZED_FILE = "personalized_adapter.safetensors"  # the fine-tuned adapter (fedpriv personalize)


def device_seed(config: RunConfig, client_id: str, purpose: str) -> int:
    """A 32-bit seed for one piece of this device's training (a round number, "finetune", ...):
    reproducible per (run seed, client, purpose) and different between devices."""
    digest = hashlib.sha256(f"{config.seed}:{client_id}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass
class Device:
    split: ClientSplit
    state_dir: Path | None
    profile: str = ""

    @property
    def client_id(self) -> str:
        return self.split.client_id

    def ledger_path(self) -> Path | None:
        return self.state_dir / self.client_id / LEDGER_FILE if self.state_dir else None

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
        return self.state_dir / self.client_id / PRIVATE_FILE if self.state_dir else None

    def load_private_adapter(self, context: Context) -> dict[str, torch.Tensor] | None:
        if _PRIVATE_RECORD in context.state:
            return context.state[_PRIVATE_RECORD].to_torch_state_dict()
        path = self._private_path()
        return load_file(str(path)) if path is not None and path.exists() else None

    def save_private_adapter(self, context: Context, state: dict[str, torch.Tensor]) -> None:
        context.state[_PRIVATE_RECORD] = ArrayRecord({k: v.contiguous() for k, v in state.items()})
        path = self._private_path()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))


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
