"""The fedpriv ServerApp: sends the initial adapter, aggregates adapter updates, records the run.

`app` serves `flwr run .` (settings from `[tool.flwr.app.config]` / `--run-config`);
`make_server_app(config)` serves `fedpriv simulate`, whose settings come from the CLI.

After every round the server checkpoints what the next one needs (server/server_state.py). With
`resume` set (`fedpriv simulate --resume RUN_DIR`, or `--run-config "resume=true out='RUN_DIR'"` for
`flwr run`) it continues the run in `out` at the round after its last checkpoint, with the
settings the run was started with.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import datetime, timezone
from logging import WARNING
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from fedpriv.config import RunConfig
from fedpriv.data import list_client_files
from fedpriv.errors import ConfigError
from fedpriv.modeling import initial_adapter_state
from server.checkpoints import save_adapter
from server.participation import resolve_participation
from server.recording import RecordingStrategy
from server.report import write_report
from server.rounds import run_rounds
from server.run_record import RunRecord
from server.server_state import load_server_state, save_server_state, state_path
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
    participation = resolve_participation(config, num_clients)
    per_round = participation.clients_per_round
    options: dict[str, object] = {
        "fraction-train": per_round / num_clients,
        "fraction-evaluate": 1.0,  # every connected client reports held-out perplexity every round
        "min-train-nodes": per_round,  # Flower's: the sample size
        "min-evaluate-nodes": 1,
        "min-available-nodes": participation.min_available_nodes,
        "min-train-replies": participation.min_train_nodes,
        "min-evaluate-replies": participation.min_evaluate_nodes,
        "require-dp-metrics": config.record_dp,
        "secure-aggregation": config.secure_aggregation_on,
        "secure-aggregation-range": config.secure_aggregation_range,
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
                "dp-noise-source": "secure" if config.noise == "secure" else "seeded",
            }
        )
        if config.client_target_epsilon > 0:
            options["dp-target-epsilon"] = config.client_target_epsilon
        else:
            options["dp-noise-multiplier"] = config.client_noise_multiplier
    return build_strategy(name, **options)


def run_federation(grid: Grid, config: RunConfig, on_round_end: Callable[[int], None] | None = None) -> RunRecord:
    """Run (or, with `config.resume`, continue) the federation; returns the finished run record."""
    out_dir = Path(config.out)
    saved = None
    if config.resume:
        saved = load_server_state(out_dir)
        config = resumed_config(config, saved.config)
    elif state_path(out_dir).is_file():
        raise ConfigError("out", f"{out_dir} holds a run's checkpoint; continue it with resume (fedpriv simulate --resume "
                          f"{out_dir}) or choose another out")
    num_clients = resolve_num_clients(config)
    participation = resolve_participation(config, num_clients)
    strategy = make_strategy(config, num_clients)
    initial_config = dataclasses.replace(config, lora_rank=max_rank(config)) if strategy_name(config) == "hetlora" else config
    if saved is None:
        record = RunRecord(config=config, out_dir=out_dir)
        arrays = ArrayRecord(initial_adapter_state(initial_config))
        record.extra["adapter"] = {"num_tensors": len(arrays), "bytes": arrays.count_bytes()}
        record.extra["participation"] = participation.as_dict()
        first_round = 1
        save_adapter(out_dir / "adapters" / "round-000", arrays.to_torch_state_dict(), initial_config)
        save_server_state(out_dir, 0, config, arrays, strategy.state_dict(), record.to_json())
    else:
        record = RunRecord.from_json(config, out_dir, saved.record)
        strategy.load_state_dict(saved.strategy)
        arrays = saved.arrays
        first_round = saved.completed_round + 1
        if first_round > config.rounds and (out_dir / "report.md").is_file():
            raise ConfigError("resume", f"the run in {out_dir} finished all {config.rounds} rounds; nothing to resume")
        record.resumes.append({"from_round": first_round, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    recording = RecordingStrategy(strategy, record)

    def after_round(server_round: int, arrays: ArrayRecord) -> None:
        save_adapter(out_dir / "adapters" / f"round-{server_round:03d}", arrays.to_torch_state_dict(), initial_config)
        record.save()
        save_server_state(out_dir, server_round, config, arrays, strategy.state_dict(), record.to_json())
        if on_round_end is not None:
            on_round_end(server_round)

    run_config = ConfigRecord(config.to_flower())
    final = run_rounds(
        recording,
        grid,
        arrays,
        first_round=first_round,
        num_rounds=config.rounds,
        timeout=participation.round_timeout,
        train_config=run_config,
        evaluate_config=run_config,
        after_round=after_round,
    )
    save_adapter(out_dir / "adapters" / "final", final.to_torch_state_dict(), initial_config)
    record.save()
    write_report(record, Path(config.state_dir) if config.state_dir else None)
    return record


RESUME_PATHS = ("out", "data_dir", "state_dir")  # where the run's files are now: a run folder may move


def resumed_config(given: RunConfig, recorded: RunConfig) -> RunConfig:
    """The run continues with the settings it was started with, at the given paths; other given
    settings that differ are reported and not used (changing the model, the strategy or DP halfway
    is not a resume)."""
    differing = sorted(k for k, v in given.as_dict().items() if k not in (*RESUME_PATHS, "resume") and v != getattr(recorded, k))
    if differing:
        log(WARNING, "resume: the run in %s continues with its recorded settings; ignored: %s", given.out,
            ", ".join(f"{k.replace('_', '-')}={getattr(given, k)!r} (recorded {getattr(recorded, k)!r})" for k in differing))
    paths = {k: getattr(given, k) or getattr(recorded, k) for k in RESUME_PATHS}
    return dataclasses.replace(recorded, resume=True, **paths).validated()


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
    if config.resume and not config.out:
        raise ConfigError("resume", "name the run to continue: --run-config \"resume=true out='RUN_DIR'\"")
    if not config.out:
        config.out = str(Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    if config.noise == "auto":
        config.noise = "secure"  # a deployment draws its DP noise from a CSPRNG keyed from the OS
    config.out = str(Path(config.out).resolve())
    if not config.data_dir and config.num_clients is None:
        # A deployment's SuperNodes name their own data (node config data-path); the server needs their number.
        raise ValueError("run config needs num-clients (the SuperNodes of a deployment) or data-dir (a folder of client files)")
    print(f"fedpriv: run directory {config.out}", flush=True)
    run_federation(grid, config.validated())
