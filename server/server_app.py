"""The fedpriv ServerApp: sends the initial adapter, aggregates adapter updates, records the run.

`app` serves `flwr run .` (settings from `[tool.flwr.app.config]` / `--run-config`);
`make_server_app(config)` serves `fedpriv simulate`, whose settings come from the CLI.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from fedpriv.config import RunConfig
from fedpriv.data import list_client_files
from fedpriv.modeling import initial_adapter_state
from server.checkpoints import save_adapter
from server.recording import RecordingStrategy
from server.report import write_report
from server.run_record import RunRecord
from strategies.registry import build_strategy, default_strategy_name

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def resolve_num_clients(config: RunConfig) -> int:
    if config.data_dir:
        return len(list_client_files(Path(config.data_dir)))
    if config.num_clients is None:
        raise ValueError("num_clients must be resolved before the server starts")
    return config.num_clients


def strategy_name(config: RunConfig) -> str:
    return default_strategy_name(config.client_dp) if config.strategy == "auto" else config.strategy


def max_rank(config: RunConfig) -> int:
    """hetlora: the server keeps the global adapter at the largest client rank."""
    ranks = [config.lora_rank]
    for part in config.client_ranks.split(","):
        if "=" in part:
            ranks.append(int(part.split("=", 1)[1]))
    return max(ranks)


def make_strategy(config: RunConfig, num_clients: int) -> Strategy:
    """The configured fedpriv strategy (strategies/registry.py), wrapped in client-level DP if asked."""
    name = strategy_name(config)
    per_round = config.clients_per_round or num_clients
    options: dict[str, object] = {
        "fraction-train": per_round / num_clients,
        "fraction-evaluate": 1.0,  # every client reports held-out perplexity every round
        "min-train-nodes": per_round,
        "min-evaluate-nodes": num_clients,
        "min-available-nodes": num_clients,
        "require-dp-metrics": config.record_dp,
        "secure-aggregation": config.secure_aggregation,
        "seed": config.seed,
    }
    if config.norm_bound > 0:
        options["norm-bound"] = config.norm_bound
    if config.trim_beta > 0:
        options["trim-beta"] = config.trim_beta
    if config.server_learning_rate != 1.0:
        options["server-learning-rate"] = config.server_learning_rate
    if name == "ffa":
        options["ffa-a-seed"] = config.seed
    if name == "hetlora":
        options["hetlora-default-rank"] = config.lora_rank
        options["hetlora-method"] = config.hetlora_method
        if config.client_ranks:
            options["hetlora-client-ranks"] = config.client_ranks
    if config.client_dp:
        options.update(
            {
                "client-dp": True,
                "dp-clipping-norm": config.client_clipping_norm,
                "dp-delta": config.delta,
                # Poisson client sampling, so the tight PLD accountant applies to what actually ran.
                "dp-sampling": "poisson" if per_round < num_clients else "all",
                "dp-sample-rate": per_round / num_clients,
                "dp-population": num_clients,
                "num-rounds": config.rounds,
                "dp-seed": config.seed,
            }
        )
        if config.client_target_epsilon > 0:
            options["dp-target-epsilon"] = config.client_target_epsilon
        else:
            options["dp-noise-multiplier"] = config.client_noise_multiplier
    return build_strategy(name, **options)


def run_federation(grid: Grid, config: RunConfig, on_round_end: Callable[[int], None] | None = None) -> RunRecord:
    out_dir = Path(config.out)
    record = RunRecord(config=config, out_dir=out_dir)
    num_clients = resolve_num_clients(config)
    recording = RecordingStrategy(make_strategy(config, num_clients), record, on_round_end=on_round_end)
    initial_config = dataclasses.replace(config, lora_rank=max_rank(config)) if strategy_name(config) == "hetlora" else config
    initial = ArrayRecord(initial_adapter_state(initial_config))
    record.extra["adapter"] = {"num_tensors": len(initial), "bytes": initial.count_bytes()}

    def checkpoint(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        # Called by the strategy before round 1 (round 0 = initial adapter) and after each round.
        save_adapter(out_dir / "adapters" / f"round-{server_round:03d}", arrays.to_torch_state_dict(), initial_config)
        return None

    run_config = ConfigRecord(config.to_flower())
    result = recording.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=config.rounds,
        train_config=run_config,
        evaluate_config=run_config,
        evaluate_fn=checkpoint,
    )
    if result.arrays is not None:
        save_adapter(out_dir / "adapters" / "final", result.arrays.to_torch_state_dict(), initial_config)
    record.save()
    write_report(record)
    return record


def make_server_app(config: RunConfig, on_round_end: Callable[[int], None] | None = None) -> ServerApp:
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(grid, config, on_round_end)

    return server_app


app = ServerApp()


def run_config_from_flower(values: dict) -> RunConfig:
    """The run config of `[tool.flwr.app.config]` + `--run-config`. Flower's config has no None, so
    pyproject.toml declares the optional keys (num-clients, clients-per-round) as "": unset."""
    optional = {f.name.replace("_", "-") for f in dataclasses.fields(RunConfig) if str(f.type).endswith("| None")}
    return RunConfig.from_flower({k: v for k, v in values.items() if not (k in optional and v == "")})


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = run_config_from_flower(dict(context.run_config))
    if not config.out:
        config.out = str(Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    config.out = str(Path(config.out).resolve())
    if not config.data_dir and config.num_clients is None:
        # A deployment's SuperNodes name their own data (node config data-path); the server needs their number.
        raise ValueError("run config needs num-clients (the SuperNodes of a deployment) or data-dir (a folder of client files)")
    print(f"fedpriv: run directory {config.out}", flush=True)
    run_federation(grid, config.validated())
