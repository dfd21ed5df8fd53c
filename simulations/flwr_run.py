"""The ServerApp `flwr run` starts (`pyproject.toml`, `[tool.flwr.app.components]`).

In a deployment it is exactly the server's (`server.server_app.main`). On Flower's simulation
engine (`flwr run .` with the local SuperLink) the nodes are virtual and hold no data of their own,
so it first prepares the run as `fedpriv simulate` does (`prepare_run`): with an empty data-dir a
synthetic federation of one client per simulated SuperNode, written into the run directory, and the
virtual devices' state folders there too. It sits here, above the server, because the synthetic data
are the simulation's: the server never imports them.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedpriv.config import RunConfig
from fedpriv.data import list_client_files
from fedpriv.errors import ConfigError
from server.server_app import main as server_main
from server.server_app import run_config_from_flower
from simulations.simulate import prepare_run, resume_config

app = ServerApp()


def is_simulation(grid: Grid) -> bool:
    """Whether the nodes are Flower's simulated SuperNodes (a simulation SuperLink runs the grid in memory)."""
    from flwr.superlink.grid import InMemoryGrid

    return isinstance(grid, InMemoryGrid)


def simulated_run_config(config: RunConfig, nodes: int) -> RunConfig:
    """`config` prepared for `nodes` simulated SuperNodes: one client each, from data-dir or synthetic;
    with `resume`, the run in `out` as `fedpriv simulate --resume` continues it (its data, its devices)."""
    if config.resume:
        if not config.out:
            raise ConfigError("resume", "name the run to continue: --run-config \"resume=true out='RUN_DIR'\"")
        config = resume_config(Path(config.out))
    clients = len(list_client_files(Path(config.data_dir))) if config.data_dir else (config.num_clients or nodes)
    if clients != nodes:
        key = "data-dir" if config.data_dir else "num-clients"
        raise ConfigError(key, f"the run needs {clients} clients but the simulation has {nodes} SuperNodes; "
                          f'run with --federation-config "num-supernodes={clients}"')
    config.num_clients = clients
    return config if config.resume else prepare_run(config)


@app.main()
def main(grid: Grid, context: Context) -> None:
    if is_simulation(grid):
        config = simulated_run_config(run_config_from_flower(dict(context.run_config)), len(list(grid.get_node_ids())))
        context = Context(run_id=context.run_id, node_id=context.node_id, node_config=context.node_config, state=context.state,
                          run_config=config.to_flower())
    server_main(grid, context)
