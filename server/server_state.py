"""Restart safety: after every round, what the next round needs, written so a crash never tears it.

`RUN_DIR/server_state/` holds

* `global-NNN.safetensors`: the global adapter after round NNN, the numpy arrays exactly as
  aggregated (bit for bit; the key order is kept in the state, since the client-level noise is
  drawn key by key in that order);
* `state.json`, the commit point, written last: the round, the run config, the strategy's state
  (sampler and noise RNGs, the client-level accountant, the ε each client reported) and the run
  record so far, with the adapter file's SHA-256.

Each file is replaced atomically (`fedpriv.files.write_atomically`), the adapter before the state
that names it, so a crash at any point leaves the previous round's checkpoint or the new one.
The devices' ledgers are not here: they live in each device's state directory and continue by
themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.files import write_atomically
from server.run_record import dumps_metrics, loads_metrics
from strategies.base import decode_record, to_array_record

STATE_DIR = "server_state"
STATE_FILE = "state.json"
FORMAT = 1


@dataclass(frozen=True)
class ServerState:
    completed_round: int
    config: RunConfig
    arrays: ArrayRecord
    strategy: dict[str, Any]
    record: dict[str, Any]  # the run record as metrics.json holds it


def state_path(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_DIR / STATE_FILE


def save_server_state(out_dir: Path, completed_round: int, config: RunConfig, arrays: ArrayRecord,
                      strategy: dict[str, Any], record: dict[str, Any]) -> Path:
    folder = Path(out_dir) / STATE_DIR
    decoded = decode_record(arrays)
    data = save_arrays({k: np.ascontiguousarray(v) for k, v in decoded.items()})
    adapter_name = f"global-{completed_round:03d}.safetensors"
    write_atomically(folder / adapter_name, data)
    state = {
        "format": FORMAT,
        "completed_round": completed_round,
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.as_dict(),
        "global_adapter": {"file": adapter_name, "sha256": hashlib.sha256(data).hexdigest(), "keys": list(decoded)},
        "strategy": strategy,
        "record": record,
    }
    path = folder / STATE_FILE
    write_atomically(path, dumps_metrics(state))
    for old in folder.glob("global-*.safetensors"):
        if old.name != adapter_name:
            old.unlink(missing_ok=True)
    return path


def load_server_state(out_dir: Path) -> ServerState:
    """The last checkpoint in `out_dir`; a ConfigError (key `resume`) naming what is missing or wrong."""
    path = state_path(out_dir)
    if not path.is_file():
        raise ConfigError("resume", f"{path}: no server checkpoint, so there is nothing to resume in {out_dir}")
    try:
        state = loads_metrics(path.read_text())
        if state.get("format") != FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r}, this fedpriv reads {FORMAT}")
        adapter = state["global_adapter"]
        data = (path.parent / adapter["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != adapter["sha256"]:
            raise ValueError(f"{adapter['file']} does not match the checksum the checkpoint recorded")
        arrays = load_arrays(data)
        config = RunConfig(**state["config"])  # validated by the resume, once its paths are where the run is now
        return ServerState(
            completed_round=int(state["completed_round"]),
            config=config,
            arrays=to_array_record({key: arrays[key] for key in adapter["keys"]}),
            strategy=state["strategy"],
            record=state["record"],
        )
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError("resume", f"{path}: unreadable server checkpoint ({err})") from None
