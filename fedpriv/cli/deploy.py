"""`fedpriv deploy init DIR --nodes N` — keys, certificates and the exact commands of a real deployment;
`fedpriv deploy run [APP] [SUPERLINK]` — `flwr run --stream` that exits non-zero unless the run completed.

`init` writes a CA and the SuperLink's TLS certificate (valid for --address, localhost and 127.0.0.1),
one SuperNode authentication key pair per device, each device's state directory, the Flower CLI's
connection to the SuperLink (DIR/cli/config.toml, used with FLWR_HOME=DIR/cli) and commands.txt: the
SuperLink with TLS and SuperNode authentication, the registration of each device, each device's
SuperNode with its data file and state directory, and the run with the profile's run config
(docs/deployment.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedpriv.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from fedpriv.deploy.plan import DEFAULT_NODE_PORT, DEFAULT_PORT
    from fedpriv.deploy.profiles import PROFILES

    deploy = subparsers.add_parser("deploy", help="deploy real clients: keys and certificates (init), a checked `flwr run` (run)",
                                   description=__doc__.split("\n\n", 1)[1])
    commands = deploy.add_subparsers(dest="deploy_command", metavar="SUBCOMMAND")
    commands.required = True

    init = commands.add_parser("init", help="write keys, certificates and commands.txt for a SuperLink and N SuperNodes",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    init.add_argument("dir", metavar="DIR", help="folder to write (must be empty or new, unless --force)")
    init.add_argument("--nodes", type=int, default=None, help="number of SuperNodes (default: one per file of --data-dir)")
    init.add_argument("--address", default="127.0.0.1", help="host name or IP the devices reach the SuperLink at")
    init.add_argument("--profile", choices=sorted(PROFILES), default="hospital", help="hospital: cross-silo; phone: cross-device")
    init.add_argument("--rounds", type=int, default=None, help="rounds of the run (default: the profile's)")
    init.add_argument("--port", type=int, default=DEFAULT_PORT, help="the SuperLink's port (Fleet and Control API)")
    init.add_argument("--node-port", type=int, default=DEFAULT_NODE_PORT, help="first SuperNode's local Runtime API port; node i uses PORT + i - 1")
    init.add_argument("--data-dir", default=None, help="a folder of <client_id>.jsonl files: node i gets the i-th file as its data-path")
    init.add_argument("--days", type=int, default=365, help="validity of the certificates")
    init.add_argument("--force", action="store_true", help="write into a non-empty DIR, replacing keys and certificates (device state is kept)")
    init.set_defaults(func=_init)

    run = commands.add_parser("run", help="`flwr run --stream`, then exit 1 unless the run finished:completed")
    run.add_argument("app", metavar="APP", nargs="?", default=".", help="the Flower app (this checkout)")
    run.add_argument("superlink", metavar="SUPERLINK", nargs="?", default=None, help="the Flower CLI's connection (default: its default)")
    run.add_argument("--run-config", "-c", action="append", default=[], help="as for `flwr run`")
    run.add_argument("--federation-config", action="append", default=[], help="as for `flwr run` (simulation: num-supernodes=N)")
    run.set_defaults(func=_run)


def _init(args: argparse.Namespace) -> int:
    from fedpriv.data import list_client_files
    from fedpriv.deploy.plan import plan_deployment, write_deployment

    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        raise ConfigError("DIR", f"{root} is a file")
    if root.is_dir() and any(root.iterdir()) and not args.force:
        raise ConfigError("DIR", f"{root} is not empty; choose a new folder or pass --force to replace its keys and certificates")
    files = list_client_files(Path(args.data_dir)) if args.data_dir else None
    nodes = args.nodes if args.nodes is not None else (len(files) if files else None)
    if nodes is None:
        raise ConfigError("--nodes", "how many SuperNodes? give --nodes N (or --data-dir with one file per node)")
    if nodes < 1:
        raise ConfigError("--nodes", f"must be at least 1, got {nodes}")
    if files is not None and nodes > len(files):
        raise ConfigError("--nodes", f"{args.data_dir} holds {len(files)} client files, fewer than {nodes} nodes")
    if args.rounds is not None and args.rounds < 1:
        raise ConfigError("--rounds", f"must be at least 1, got {args.rounds}")
    if args.days < 1:
        raise ConfigError("--days", f"must be at least 1, got {args.days}")
    for flag, port in (("--port", args.port), ("--node-port", args.node_port), ("--node-port", args.node_port + nodes - 1)):
        if not 0 < port < 65536:
            raise ConfigError(flag, f"port {port} is not in 1-65535")
    deployment = plan_deployment(root, nodes, args.address, args.profile, port=args.port, node_port=args.node_port,
                                 data_files=files[:nodes] if files else None, rounds=args.rounds)
    write_deployment(deployment, replace=args.force, days=args.days)
    print(f"wrote a {args.profile} deployment for {nodes} SuperNodes to {deployment.root}")
    print(f"the commands, in order: {deployment.root / 'commands.txt'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from fedpriv.deploy.flower_run import run_and_check

    options: list[str] = []
    for value in args.run_config:
        options += ["--run-config", value]
    for value in args.federation_config:
        options += ["--federation-config", value]
    return run_and_check(args.app, args.superlink, options)
