"""Personalize every device of a finished simulated run (`fedpriv personalize RUN_DIR`).

Each device of the run (its data split, its privacy ledger and, for fedsa, its private lora_B, all
under the run's `devices/<client-id>/`) runs `client.personalize.personalize_split` from the run's
final global adapter; the results go to RUN_DIR/personalization.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedpriv.errors import DataError


def load_run_config(run_dir: Path):
    """The run's configuration, as recorded in its metrics.json."""
    from fedpriv.config import RunConfig

    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{metrics_path}: not found; RUN_DIR must be a finished `fedpriv simulate` run")
    try:
        values = json.loads(metrics_path.read_text())["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{metrics_path}: no readable 'config' section ({err})") from err
    values = {k: v for k, v in values.items() if v is not None}
    # The run's own data and device folders win over the recorded paths: those were recorded relative
    # to where `simulate` ran, and for a copied run folder they name the original's devices, whose
    # ledgers must not be spent by personalizing the copy. (A --state-dir or --data outside the run
    # folder has no copy inside it, so its recorded path is used.)
    for key, own in (("data_dir", run_dir / "data"), ("state_dir", run_dir / "devices")):
        if own.is_dir():
            values[key] = str(own)
    return RunConfig.from_flower(values)


def personalize_run(run_dir: Path, clients: list[str] | None = None, finetune_epochs: int | None = None,
                    global_weight: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Personalize the run's devices; returns (and writes to RUN_DIR/personalization.json) the results."""
    from client.interpolation import check_weight
    from client.personalize import BaseModelCache, load_global_adapter, personalization_config, personalize_split, save_summary, summarize
    from fedpriv.data import list_client_files, split_client_file
    from fedpriv.modeling import load_tokenizer
    from server.server_app import strategy_name

    run_dir = Path(run_dir)
    run_config = load_run_config(run_dir)
    mode = strategy_name(run_config)
    config = personalization_config(run_config, mode, finetune_epochs)
    weight = None if global_weight is None else check_weight(global_weight)
    adapter_dir = run_dir / "adapters" / "final"
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise DataError(f"{adapter_dir}: no final global adapter; did the run finish?")
    state_dir = Path(config.state_dir) if config.state_dir else run_dir / "devices"
    files = {path.stem: path for path in list_client_files(Path(config.data_dir))}
    wanted = clients or sorted(files)
    unknown = [c for c in wanted if c not in files]
    if unknown:
        raise DataError(f"no data for client(s) {', '.join(unknown)} in {config.data_dir} (known: {', '.join(sorted(files))})")

    global_state = load_global_adapter(adapter_dir)
    models = BaseModelCache(config.model)
    tokenizer = load_tokenizer(config.model)
    results: dict[str, Any] = {}
    for client_id in _progress(wanted, progress):
        split = split_client_file(files[client_id], config.eval_fraction, config.seed)
        results[client_id] = personalize_split(models, tokenizer, config, mode, split, global_state, state_dir / client_id, weight)
    summary = summarize(config, mode, weight, results)
    save_summary(run_dir, summary)
    return summary


def _progress(items: list[str], show: bool):
    if not show:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description="personalizing devices")
