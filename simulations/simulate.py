"""`fedpriv simulate`: a whole federation on this machine, on Flower's simulation engine (Ray)."""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fedpriv.config import RunConfig
from fedpriv.data import validate_data_dir
from fedpriv.errors import ConfigError

if TYPE_CHECKING:
    from flwr.clientapp import ClientApp

# Ray runs floor(cores / num_cpus) clients at once; one core per client keeps every core busy.
CPUS_PER_CLIENT = 1


def prepare_run(config: RunConfig) -> RunConfig:
    """Resolve defaults (client count, output and data folders) and write synthetic data if needed."""
    out = Path(config.out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{config.profile}")
    if out.exists() and any(out.iterdir()):
        # A reused folder would mix ledgers (epsilon) and checkpoints of two runs.
        raise ConfigError("out", f"{out} already exists and is not empty; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    config.out = str(out)
    config.state_dir = config.state_dir or str(out / "devices")
    if config.data_dir:
        counts = validate_data_dir(Path(config.data_dir))  # fail on a bad line before Ray starts
        if config.num_clients is not None and config.num_clients != len(counts):
            raise ConfigError("num-clients", f"{config.data_dir} holds {len(counts)} client files, not {config.num_clients}")
        config.num_clients = len(counts)
    else:
        from simulations.synthetic import DEFAULT_NUM_CLIENTS, generate_federation, write_federation

        config.num_clients = config.num_clients or DEFAULT_NUM_CLIENTS[config.profile]
        federation = generate_federation(config.profile, config.num_clients, config.records_per_client, config.seed)
        write_federation(out / "data", federation)
        config.data_dir = str(out / "data")
    return config.validated()


def resume_config(run_dir: Path) -> RunConfig:
    """The config to continue the run in `run_dir` (`fedpriv simulate --resume`): the one it was
    started with, at the folder's paths now (its data/ and devices/, if it has them)."""
    from server.server_state import load_server_state

    run_dir = Path(run_dir)
    saved = load_server_state(run_dir)  # ConfigError (resume) if there is no readable checkpoint
    config = dataclasses.replace(saved.config, out=str(run_dir), resume=True)
    for key, own in (("data_dir", run_dir / "data"), ("state_dir", run_dir / "devices")):
        if own.is_dir():
            setattr(config, key, str(own))
    if saved.completed_round >= config.rounds and (run_dir / "report.md").is_file():
        raise ConfigError("resume", f"the run in {run_dir} finished all {config.rounds} rounds; nothing to resume")
    return config.validated()


def run_simulation(config: RunConfig, *, show_progress: bool = True, verbose: bool = False, client_app: ClientApp | None = None) -> Path:
    """Run the federation (or continue it: `config.resume`, see `resume_config`); returns the run
    directory (metrics.json, report.md, adapters/, server_state/). `client_app`: the devices' app
    (default: fedpriv's, client/client_app.py)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Stop `flwr` from trying to `uv sync` dependencies and Ray from phoning home.
    os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    # Ray workers re-import the project; make sure they find it from any working directory.
    project_root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, os.environ.get("PYTHONPATH")]))
    config = config.validated() if config.resume else prepare_run(config)
    done = 0
    if config.resume:
        from server.server_state import load_server_state

        done = load_server_state(Path(config.out)).completed_round

    from flwr.simulation import run_simulation as flower_run_simulation
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from server.server_app import make_server_app

    if client_app is None:
        from client.client_app import app as client_app

    if not verbose:
        _quiet_third_party_noise()
    console = Console(stderr=True)
    console.print(
        f"[bold]fedpriv simulate[/]: profile={config.profile} clients={config.num_clients} rounds={config.rounds} "
        f"dp={config.dp_mode} strategy={config.strategy} → {config.out}"
        + (f" (resuming after round {done})" if config.resume else "")
    )
    progress = Progress(
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not show_progress,
    )
    with progress:
        task = progress.add_task("federated rounds", total=config.rounds, completed=done)
        server_app = make_server_app(config, on_round_end=lambda r: progress.update(task, completed=r))
        flower_run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=config.num_clients,
            backend_config={
                "client_resources": {"num_cpus": CPUS_PER_CLIENT, "num_gpus": 0.0},
                "init_args": {"include_dashboard": False, "log_to_driver": verbose, "configure_logging": False},
            },
            verbose_logging=verbose,
        )
    _shutdown_ray()
    out = Path(config.out)
    if not (out / "report.md").exists():
        raise RuntimeError(f"the federation did not finish; see the log above and {out / 'metrics.json'}")
    return out


class _DropDeprecationNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "DEPRECATED FEATURE" not in record.getMessage()


# One instance: `addFilter` skips a filter already present, so repeated runs in one process
# (compare_strategies runs dozens) do not stack copies on the flwr logger.
_DROP_DEPRECATION_NOTICE = _DropDeprecationNotice()


def _quiet_third_party_noise() -> None:
    """Keep warnings that matter (rejected updates, failures); drop library deprecation chatter."""
    import warnings

    flwr_logger = logging.getLogger("flwr")
    flwr_logger.setLevel(logging.WARNING)
    flwr_logger.addFilter(_DROP_DEPRECATION_NOTICE)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _shutdown_ray() -> None:
    """Leave no Ray processes behind (Flower stops its actors; the local Ray cluster may linger)."""
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass
