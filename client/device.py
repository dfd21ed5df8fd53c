"""What one device knows about itself: its data, its id, what it keeps between rounds and restarts,
and how it builds its model. The ClientApp and the personalization after the federation
(`client.personalize`) both go through here, so they read the same files the same way.

A real device names its data file and state directory in the SuperNode's node config
(`--node-config "data-path='notes.jsonl' state-dir='/var/lib/fedpriv'"`, optionally
`device-key='/secure/fedpriv.key'`). In simulation, the node config carries Flower's `partition-id`
and the run config's `data-dir` names the folder of client files; the simulator also gives each
virtual device a state directory so ledgers outlive a restart.

With a state directory, everything the device keeps is in `<state-dir>/<client-id>/`
(`DeviceFolder`): its privacy ledger, a manifest (`device.json`) recording how many DP-SGD steps the
ledger must hold, so a deleted or older ledger is refused instead of silently restarting ε at 0,
and, sealed with the device key (`client.device_key`), its private adapter part (fedsa: lora_B) and
the last global adapter the server sent, next to the instruction it came with, so the device can
personalize after the federation on its own (`fedpriv personalize --device`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from client.device_key import KEY_FILE, DeviceKey
from client.privacy_ledger import PrivacyLedger
from fedpriv.adapter_parts import ClientPlan, apply_shared_lora_A, pop_strategy_config, split_adapter
from fedpriv.config import RunConfig
from fedpriv.data import ClientSplit, load_client, split_client_file
from fedpriv.device_log import append_entry
from fedpriv.errors import DataError
from fedpriv.files import write_atomically
from fedpriv.modeling import adapter_state, build_lora_model, load_adapter_state, load_base_model

_LEDGER_RECORD = "privacy-ledger"
_PRIVATE_RECORD = "private-adapter"
# File names inside a device's folder (`<state-dir>/<client-id>/`).
LEDGER_FILE = "privacy_ledger.json"
MANIFEST_FILE = "device.json"  # how many DP-SGD steps the ledger holds at least, which files are sealed
PRIVATE_FILE = "private_adapter.sealed"  # the adapter part that never leaves the device (fedsa: lora_B)
GLOBAL_ADAPTER_FILE = "global_adapter.sealed"  # the last global adapter the server sent, as received
RUN_CONFIG_FILE = "run_config.json"  # ... and the instruction (run config, strategy plan, round) it came with
PERSONALIZED_FILE = "personalized_adapter.safetensors"  # the mixture's private adapter (fedpriv personalize), for the user's own use
_PURPOSES = {PRIVATE_FILE: "private-adapter", GLOBAL_ADAPTER_FILE: "global-adapter"}


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


# ---- the device's model: one way to build it, in the federation and after it -------------------


class BaseModelCache:
    """Loads the base model once; hands out fresh LoRA models built on deep copies of it."""

    def __init__(self, model: str):
        self.name = model
        self._base: torch.nn.Module | None = None

    def lora_model(self, config: RunConfig):
        if self._base is None:
            self._base = load_base_model(self.name)
        return build_lora_model(config, copy.deepcopy(self._base))


def full_adapter(fresh: Mapping[str, torch.Tensor], received: Mapping[str, torch.Tensor], plan: ClientPlan,
                 private: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The adapter a device trains and predicts with: what the server sent, completed with what the
    device supplies itself. ffa: A, frozen at the shared seeded init, is rebuilt here (never sent).
    fedsa: B is the device's own (`private`; before its first round, the fresh init, zero). Every
    other tensor must come from the server (`load_adapter_state` refuses a missing one)."""
    if plan.mode == "ffa" and plan.a_seed is not None:
        return apply_shared_lora_A({**fresh, **received}, plan.a_seed, plan.a_init)
    if plan.mode == "fedsa":
        own = split_adapter(private if private is not None else fresh, "fedsa")[1]
        return {**received, **own}
    return dict(received)


def device_model(models: BaseModelCache, config: RunConfig, plan: ClientPlan, received: Mapping[str, torch.Tensor],
                 private: Mapping[str, torch.Tensor] | None = None):
    """A LoRA model at the config's rank holding `full_adapter(...)`."""
    model = models.lora_model(config)
    load_adapter_state(model, full_adapter(adapter_state(model), received, plan, private))
    return model


# ---- what a device keeps: <state-dir>/<client-id>/ ----------------------------------------------


@dataclass
class DeviceFolder:
    """The files of one device. `key_path`: its device key (default `device.key` in the folder)."""

    path: Path
    key_path: Path | None = None
    _key: DeviceKey | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.key_path = Path(self.key_path) if self.key_path else self.path / KEY_FILE

    @property
    def client_id(self) -> str:
        return self.path.name

    @property
    def ledger_path(self) -> Path:
        return self.path / LEDGER_FILE

    # ---- the manifest ------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST_FILE
        if not path.is_file():
            return {}
        try:
            values = json.loads(path.read_text())
            int(values.get("dp-steps", 0)), list(values.get("sealed", []))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError, ValueError) as err:
            raise DataError(f"{path}: device manifest is corrupt ({err}); refusing to train with an unknown budget") from None
        return values

    def _record(self, **changes: Any) -> None:
        write_atomically(self.path / MANIFEST_FILE, json.dumps({**self.manifest(), "client-id": self.client_id, **changes}, indent=2))

    # ---- the device key ----------------------------------------------------------------------

    def sealed_files(self) -> list[str]:
        """Sealed files this folder holds or has held (the manifest remembers them)."""
        present = [name for name in _PURPOSES if (self.path / name).exists()]
        return sorted({*self.manifest().get("sealed", []), *present})

    def key(self) -> DeviceKey:
        """The device key; made on first use, never replaced while something sealed with it exists."""
        if self._key is None:
            if self.key_path.exists():
                self._key = DeviceKey.load(self.key_path)
            elif sealed := self.sealed_files():
                raise DataError(f"{self.key_path}: device key missing, but {self.path} holds {', '.join(sealed)} sealed with it; "
                                "restore the key (a new one would not open them, and the device would start over)")
            else:
                self._key = DeviceKey.create(self.key_path)
        return self._key

    def _purpose(self, name: str) -> bytes:
        return f"{_PURPOSES[name]}:{self.client_id}".encode()

    def _write_tensors(self, name: str, tensors: Mapping[str, torch.Tensor]) -> None:
        data = save_tensors({k: v.detach().contiguous() for k, v in tensors.items()})
        self.key().write_sealed(self.path / name, data, self._purpose(name))
        if name not in self.manifest().get("sealed", []):
            self._record(sealed=sorted({*self.manifest().get("sealed", []), name}))

    def _read_tensors(self, name: str) -> dict[str, torch.Tensor]:
        data = self.key().read_sealed(self.path / name, self._purpose(name))
        try:
            return dict(load_tensors(data))
        except SafetensorError as err:
            raise DataError(f"{self.path / name}: opened, but holds no adapter tensors ({err})") from None

    # ---- the privacy ledger ------------------------------------------------------------------

    def load_ledger(self, accountant: str, *, required: bool = False) -> PrivacyLedger | None:
        """The device's ledger; None if it has none and never took a DP-SGD step here. A ledger that
        is missing or holds fewer steps than the manifest records is refused: ε must never restart
        lower than what was spent. `required`: a missing ledger is an error even on a first use."""
        path, recorded = self.ledger_path, int(self.manifest().get("dp-steps", 0))
        if not path.is_file():
            if recorded > 0:
                raise DataError(f"{path}: privacy ledger missing, yet this device has taken {recorded} DP-SGD steps ({MANIFEST_FILE}); "
                                "refusing to train with an unknown budget (restore the ledger from a backup)")
            if required:
                raise DataError(f"{path}: no privacy ledger from the federation; refusing to fine-tune with an unknown budget")
            return None
        ledger = PrivacyLedger.load(path, accountant)
        if ledger.steps < recorded:
            raise DataError(f"{path}: privacy ledger holds {ledger.steps} DP-SGD steps, fewer than the {recorded} this device has "
                            f"taken ({MANIFEST_FILE}): an older copy; refusing to train with an unknown budget")
        return ledger

    def save_ledger(self, ledger: PrivacyLedger) -> None:
        # Ledger first, then the manifest: a crash in between leaves a ledger ahead of it, never behind.
        ledger.save(self.ledger_path)
        self._record(**{"dp-steps": ledger.steps})

    # ---- the private adapter part ------------------------------------------------------------

    def load_private(self) -> dict[str, torch.Tensor] | None:
        """The adapter part that stays on the device, or None before it first trained one."""
        if not (self.path / PRIVATE_FILE).exists():
            if PRIVATE_FILE in self.manifest().get("sealed", []):
                raise DataError(f"{self.path / PRIVATE_FILE}: the device's private adapter part is missing; "
                                "refusing to start it over from the initial adapter")
            return None
        return self._read_tensors(PRIVATE_FILE)

    def save_private(self, state: Mapping[str, torch.Tensor]) -> None:
        self._write_tensors(PRIVATE_FILE, state)

    # ---- the last global adapter received ----------------------------------------------------

    def holds_global(self) -> bool:
        return (self.path / GLOBAL_ADAPTER_FILE).is_file()

    def log_metrics(self, phase: str, server_round: int, metrics: Mapping[str, float | int]) -> None:
        """Keep what the device measured in its own log (fedpriv/device_log.py); without a state dir it keeps nothing."""
        if self.folder is not None:
            append_entry(self.folder.path, phase, server_round, metrics)

    def save_received_global(self, received: Mapping[str, torch.Tensor], instruction: Mapping[str, Any], message_type: str,
                             run_id: int | None) -> None:
        """Keep the global adapter exactly as received and the message config it came with
        (`read_instruction` parses it back), replacing the previous ones. Nothing here is sent anywhere."""
        self._write_tensors(GLOBAL_ADAPTER_FILE, received)
        record = {"message_type": message_type, "run_id": run_id, "instruction": dict(instruction)}
        write_atomically(self.path / RUN_CONFIG_FILE, json.dumps(record, indent=2))

    def load_received_global(self) -> ReceivedGlobal:
        """What `save_received_global` left; DataError if there is nothing."""
        adapter_path, config_path = self.path / GLOBAL_ADAPTER_FILE, self.path / RUN_CONFIG_FILE
        if not adapter_path.is_file() or not config_path.is_file():
            raise DataError(
                f"{self.path}: no global adapter persisted ({GLOBAL_ADAPTER_FILE} and {RUN_CONFIG_FILE}); "
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
        return ReceivedGlobal(self._read_tensors(GLOBAL_ADAPTER_FILE), read_instruction(values), message_type, run_id)


def devices_with_global(state_dir: Path) -> list[str]:
    """Client ids (sub-folders of a state directory) that hold a persisted global adapter."""
    return sorted(p.name for p in Path(state_dir).iterdir() if (p / GLOBAL_ADAPTER_FILE).is_file())


# ---- the device as the ClientApp sees it ---------------------------------------------------------


@dataclass
class Device:
    split: ClientSplit
    state_dir: Path | None
    profile: str = ""
    key_path: Path | None = None
    _folder: DeviceFolder | None = field(default=None, init=False, repr=False)

    @property
    def client_id(self) -> str:
        return self.split.client_id

    @property
    def folder(self) -> DeviceFolder | None:
        """`<state-dir>/<client-id>/`, where this device keeps its files (None: it keeps none)."""
        if self._folder is None and self.state_dir:
            self._folder = DeviceFolder(Path(self.state_dir) / self.client_id, self.key_path)
        return self._folder

    def load_ledger(self, context: Context, accountant: str) -> PrivacyLedger:
        """The ledger that holds every DP-SGD step this device took: the folder's (which outlives a
        restart), checked against the node state's (which outlives only the rounds of one run)."""
        in_state = None
        if _LEDGER_RECORD in context.state:
            in_state = PrivacyLedger.from_json(str(context.state[_LEDGER_RECORD]["json"]), source="node state")
        if self.folder is None:
            return in_state or PrivacyLedger(accountant=accountant)
        on_disk = self.folder.load_ledger(accountant)
        if on_disk is None:
            if in_state is not None and in_state.steps > 0:
                raise DataError(f"{self.folder.ledger_path}: privacy ledger missing while this SuperNode's node state holds "
                                f"{in_state.steps} DP-SGD steps; refusing to train with an unknown budget")
            return PrivacyLedger(accountant=accountant)
        if in_state is not None and in_state.steps > on_disk.steps:
            raise DataError(f"{self.folder.ledger_path}: privacy ledger holds {on_disk.steps} DP-SGD steps, fewer than the "
                            f"{in_state.steps} in this SuperNode's node state; refusing to train with an unknown budget")
        return on_disk

    def save_ledger(self, context: Context, ledger: PrivacyLedger) -> None:
        # Both: node state survives rounds in one run, the folder survives process restarts.
        context.state[_LEDGER_RECORD] = ConfigRecord({"json": ledger.to_json()})
        if self.folder is not None:
            self.folder.save_ledger(ledger)

    def load_private_adapter(self, context: Context) -> dict[str, torch.Tensor] | None:
        if _PRIVATE_RECORD in context.state:
            return context.state[_PRIVATE_RECORD].to_torch_state_dict()
        return self.folder.load_private() if self.folder is not None else None

    def save_private_adapter(self, context: Context, state: dict[str, torch.Tensor]) -> None:
        context.state[_PRIVATE_RECORD] = ArrayRecord({k: v.contiguous() for k, v in state.items()})
        if self.folder is not None:
            self.folder.save_private(state)

    def log_metrics(self, phase: str, server_round: int, metrics: Mapping[str, float | int]) -> None:
        """Keep what the device measured in its own log (fedpriv/device_log.py); without a state dir it keeps nothing."""
        if self.folder is not None:
            append_entry(self.folder.path, phase, server_round, metrics)

    def save_received_global(self, received: Mapping[str, torch.Tensor], instruction: Mapping[str, Any], message_type: str,
                             run_id: int | None) -> None:
        """With a state dir: keep the global adapter as received, for personalizing after the federation."""
        if self.folder is not None:
            self.folder.save_received_global(received, instruction, message_type, run_id)


def open_device(context: Context, config: RunConfig) -> Device:
    node = context.node_config
    state_dir = node.get("state-dir") or config.state_dir
    if "data-path" in node:
        path = Path(str(node["data-path"]))
        if not path.is_file():
            raise DataError(f"node config data-path: file not found: {path}")
        split = split_client_file(path, config.eval_fraction, config.seed)  # the client id checked as for --data
    elif config.data_dir:
        if "partition-id" not in node:
            raise DataError("node config has neither data-path nor partition-id: cannot find this device's data")
        split = load_client(Path(config.data_dir), int(node["partition-id"]), config.eval_fraction, config.seed)
    else:
        raise DataError("no data for this device: set data-path in the node config or data-dir in the run config")
    profile = str(node.get("profile", config.profile))
    key_path = Path(str(node["device-key"])) if node.get("device-key") else None
    return Device(split=split, state_dir=Path(str(state_dir)) if state_dir else None, profile=profile, key_path=key_path)
