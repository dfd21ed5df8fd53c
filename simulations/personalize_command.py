"""CLI: `fedpriv personalize RUN_DIR` — personalize every device of a finished simulated run.

Each device of the run (its data split, its privacy ledger and, for fedsa, its private lora_B, all
under the run's `devices/<client-id>/`) fine-tunes the final global adapter on its own train split
for the run's `finetune_epochs`, paying from its ledger, and predicts with the mixture of the
federated and the fine-tuned model (`client.interpolation`). The fine-tuned adapter is written to
the device's own folder (`personalized_adapter.safetensors`); nothing is sent anywhere. With a
record-level budget (`--target-epsilon E`) the run must have reserved the fine-tuning in it
(`fedpriv simulate --finetune-epochs N --target-epsilon E`), otherwise the devices refuse.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fedpriv.errors import ConfigError, DataError

MODES = ("fedavg", "ffa", "fedsa")
RESULT_FILE = "personalization.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from client.interpolation import DEFAULT_GLOBAL_WEIGHT

    cmd = subparsers.add_parser(
        "personalize",
        help="fine-tune a finished simulated run's global adapter on every device and report the personalized models",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cmd.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `fedpriv simulate`")
    cmd.add_argument("--clients", default="", help="comma-separated client ids (default: every device of the run)")
    cmd.add_argument("--finetune-epochs", type=int, default=None, help="override the run's finetune-epochs (under DP the ledger still caps the budget)")
    cmd.add_argument("--global-weight", type=float, default=DEFAULT_GLOBAL_WEIGHT, metavar="LAMBDA",
                     help="personalized = LAMBDA x federated + (1 - LAMBDA) x fine-tuned model (fixed: spends no privacy)")
    cmd.set_defaults(func=_personalize)


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
    # Paths were recorded relative to where `simulate` ran; the run's own copies work from anywhere.
    for key, own in (("data_dir", run_dir / "data"), ("state_dir", run_dir / "devices")):
        if own.is_dir() and not Path(str(values.get(key, ""))).is_dir():
            values[key] = str(own)
    return RunConfig.from_flower(values)


def personalize_run(run_dir: Path, clients: list[str] | None = None, finetune_epochs: int | None = None,
                    global_weight: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Personalize the run's devices; returns (and writes to RUN_DIR/personalization.json) the results."""
    import dataclasses

    from client.device import PERSONALIZED_FILE
    from client.interpolation import DEFAULT_GLOBAL_WEIGHT, check_weight
    from client.personalize import BaseModelCache, load_global_adapter, personalize
    from client.dp_training import encode
    from fedpriv.data import list_client_files, split_client_file
    from fedpriv.modeling import load_tokenizer
    from server.server_app import strategy_name

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if finetune_epochs is not None:
        if finetune_epochs <= 0:
            raise ConfigError("finetune-epochs", f"must be at least 1 to personalize, got {finetune_epochs}")
        config = dataclasses.replace(config, finetune_epochs=finetune_epochs)
    if config.finetune_epochs <= 0:
        raise ConfigError("finetune-epochs", "the run reserved no fine-tuning epochs; pass --finetune-epochs N")
    weight = check_weight(DEFAULT_GLOBAL_WEIGHT if global_weight is None else global_weight)
    mode = strategy_name(config)
    if mode not in MODES:
        raise ConfigError("strategy", f"personalization supports runs of {', '.join(MODES)}, not {mode!r}")
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
        device_dir = state_dir / client_id
        result = personalize(
            models, config, mode, client_id, global_state, device_dir,
            encode(tokenizer, split.train, config.max_seq_len), encode(tokenizer, split.held_out, config.max_seq_len),
            global_weight=weight, save_adapter=device_dir / PERSONALIZED_FILE,
        )
        results[client_id] = {
            "federated_perplexity": result.federated.perplexity,
            "finetuned_perplexity": result.finetuned.perplexity,
            "personalized_perplexity": result.interpolated.perplexity,
            "epsilon": result.finetuned.epsilon,
            "dp_steps": result.finetuned.steps,
            "adapter": str(device_dir / PERSONALIZED_FILE),
        }
    summary = {"strategy": mode, "finetune_epochs": config.finetune_epochs, "global_weight": weight,
               "delta": config.delta if config.record_dp else None, "clients": results}
    (run_dir / RESULT_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def _progress(items: list[str], show: bool):
    if not show:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description="personalizing devices")


def _personalize(args: argparse.Namespace) -> int:
    clients = [c.strip() for c in args.clients.split(",") if c.strip()] or None
    try:
        summary = personalize_run(Path(args.run_dir), clients, args.finetune_epochs, args.global_weight)
    except FileNotFoundError as err:  # a DP device without its ledger, a fedsa device without its B
        raise DataError(str(err)) from err
    _print(summary, Path(args.run_dir))
    return 0


def _print(summary: dict[str, Any], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Held-out perplexity after personalization ({summary['strategy']}, "
                        f"{summary['finetune_epochs']} fine-tuning epochs, λ = {summary['global_weight']:g})")
    for column in ("client", "federated", "fine-tuned", "personalized", "ε"):
        table.add_column(column, justify="left" if column == "client" else "right")
    for client_id, r in summary["clients"].items():
        eps = "—" if r["epsilon"] is None else f"{r['epsilon']:.3f}"
        table.add_row(client_id, f"{r['federated_perplexity']:.2f}", f"{r['finetuned_perplexity']:.2f}", f"{r['personalized_perplexity']:.2f}", eps)
    console = Console()
    console.print(table)
    if summary["delta"] is None:
        console.print("record-level DP off: no formal privacy guarantee for the fine-tuning")
    console.print(f"fine-tuned adapters stay in each device's folder; results: {run_dir / RESULT_FILE}")

