"""The fedpriv ServerApp: sends the initial adapter, aggregates adapter updates, records the run.

`app` serves `flwr run .` (settings from `[tool.flwr.app.config]` / `--run-config`);
`make_server_app(config)` serves `fedpriv simulate`, whose settings come from the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedpriv.config import RunConfig
from fedpriv.data import list_client_files
from fedpriv.modeling import initial_adapter_state
from server.checkpoints import save_adapter
from server.recording import RecordingStrategy
from server.report import write_report
from server.run_record import RunRecord

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def resolve_num_clients(config: RunConfig) -> int:
    if config.data_dir:
        return len(list_client_files(Path(config.data_dir)))
    if config.num_clients is None:
        raise ValueError("num_clients must be resolved before the server starts")
    return config.num_clients


def run_federation(grid: Grid, config: RunConfig, on_round_end: Callable[[int], None] | None = None) -> RunRecord:
    out_dir = Path(config.out)
    record = RunRecord(config=config, out_dir=out_dir)
    num_clients = resolve_num_clients(config)
    per_round = config.clients_per_round or num_clients
    strategy = FedAvg(
        fraction_train=per_round / num_clients,
        fraction_evaluate=1.0,  # every client reports held-out perplexity every round
        min_train_nodes=per_round,
        min_evaluate_nodes=num_clients,
        min_available_nodes=num_clients,
    )
    recording = RecordingStrategy(strategy, record, on_round_end=on_round_end)
    initial = ArrayRecord(initial_adapter_state(config))
    record.extra["adapter"] = {"num_tensors": len(initial), "bytes": initial.count_bytes()}

    def checkpoint(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        # Called by the strategy before round 1 (round 0 = initial adapter) and after each round.
        save_adapter(out_dir / "adapters" / f"round-{server_round:03d}", arrays.to_torch_state_dict(), config)
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
    save_adapter(out_dir / "adapters" / "final", result.arrays.to_torch_state_dict(), config)
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


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = RunConfig.from_flower(dict(context.run_config))
    if not config.out:
        config.out = str(Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    if not config.data_dir:
        raise ValueError("run config data-dir is required for `flwr run` (write synthetic data with `fedpriv data --out DIR`)")
    run_federation(grid, config.validated())
