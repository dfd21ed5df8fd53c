"""`fedpriv deploy init DIR`: the files of a deployment and the exact commands that use them.

DIR/
  tls/ca.crt, tls/superlink.crt          certificates (0644); ca.crt goes to every device
  tls/ca.key, tls/superlink.key          private keys (0600); ca.key belongs offline, not on the server
  nodes/node-<i>/auth.key, auth.pub      node i's SuperNode authentication key pair (0600 / 0644)
  nodes/node-<i>/state/                  node i's state-dir (0700): its ledger, its sealed adapters
  cli/config.toml                        the Flower CLI's connection `fedpriv` to the SuperLink (FLWR_HOME)
  commands.txt                           the commands below, in order, each marked with where it runs

Every program gets its own FLWR_HOME below DIR (Flower installs the app bundle there), so several
SuperNodes can share one machine for a trial and nothing touches the user's ~/.flwr.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from fedpriv.deploy.credentials import KEY_MODE, PUBLIC_MODE, create_file, make_node_key, make_tls_material
from fedpriv.deploy.profiles import RunConfigValues, run_config

CONNECTION = "fedpriv"  # the Flower CLI's name for the SuperLink connection
DEFAULT_PORT = 9092
DEFAULT_NODE_PORT = 9094  # each SuperNode's local Runtime API; node i uses DEFAULT_NODE_PORT + i - 1
LOOPBACK = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Command:
    """One program to start: its argv and the environment variables it needs on top of the user's."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    where: str = ""

    def shell(self) -> str:
        return " ".join([*(f"{k}={shell_quote(v)}" for k, v in self.env.items()), *map(shell_quote, self.argv)])


@dataclass(frozen=True)
class Node:
    name: str
    private_key: Path
    public_key: Path
    state_dir: Path
    data_path: Path
    port: int


@dataclass(frozen=True)
class Deployment:
    root: Path
    address: str
    port: int
    profile: str
    nodes: list[Node]
    run_config: RunConfigValues

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.crt"

    @property
    def cli_home(self) -> Path:
        return self.root / "cli"

    @property
    def superlink_address(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def superlink(self) -> Command:
        bind = "127.0.0.1" if self.address in LOOPBACK else "0.0.0.0"
        return Command(
            ["flower-superlink", "--ssl-ca-certfile", str(self.ca_cert), "--ssl-certfile", str(self.tls / "superlink.crt"),
             "--ssl-keyfile", str(self.tls / "superlink.key"), "--enable-supernode-auth", "--host", bind, "--port", str(self.port),
             "--database", str(self.root / "superlink" / "state.db"), "--disable-runtime-dependency-installation"],
            {"FLWR_HOME": str(self.root / "superlink" / "flwr-home")},
            "the server",
        )

    def register(self, node: Node) -> Command:
        return Command(["flwr", "supernode", "register", str(node.public_key), CONNECTION, "--name", node.name],
                       {"FLWR_HOME": str(self.cli_home)}, "the server (Flower CLI)")

    def supernode(self, node: Node, *, private_key: Path | None = None, trust_ca: bool = True) -> Command:
        """Node `node`'s SuperNode. `private_key` replaces its own key and `trust_ca=False` leaves out
        the CA certificate: what an impostor would run (the tests check both are refused)."""
        node_config = f"data-path={_toml_string(str(node.data_path))} state-dir={_toml_string(str(node.state_dir))}"
        argv = ["flower-supernode", *(["--root-certificates", str(self.ca_cert)] if trust_ca else [])]
        argv += ["--auth-supernode-private-key", str(private_key or node.private_key), "--superlink", self.superlink_address,
                 "--port", str(node.port), "--node-config", node_config]
        return Command(argv, {"FLWR_HOME": str(node.state_dir.parent / "flwr-home")}, f"device {node.name}")

    def run(self, app: str = ".", *, wait: bool = True, **overrides: bool | int | float | str) -> Command:
        """`fedpriv deploy run` (`flwr run --stream`, then exit non-zero unless the run completed);
        `wait=False`: plain `flwr run`, which exits 0 whatever happens to the run."""
        values = {**self.run_config, **overrides}
        config = " ".join(f"{key}={_toml_value(value)}" for key, value in values.items())
        argv = ["fedpriv", "deploy", "run", app, CONNECTION] if wait else ["flwr", "run", app, CONNECTION, "--stream"]
        return Command([*argv, "--run-config", config], {"FLWR_HOME": str(self.cli_home)}, "the server (Flower CLI), in the fedpriv checkout")

    def commands_text(self) -> str:
        lines = [
            f"# fedpriv deployment: profile {self.profile}, {len(self.nodes)} SuperNodes, SuperLink at {self.superlink_address}",
            "# Run each command on the machine named above it. Copy to device i: tls/ca.crt, nodes/node-<i>/auth.key and",
            "# its data file; keep tls/ca.key off the server. Every program runs in the fedpriv environment (pip install fedpriv).",
            "",
            f"# 1. {self.superlink().where}: the SuperLink, TLS on and only registered SuperNodes admitted",
            self.superlink().shell(),
            "",
            "# 2. register each device's public key (the SuperLink must be up)",
            *(self.register(node).shell() for node in self.nodes),
            "",
            "# 3. on each device: its SuperNode, with its own data file and state directory",
            *(f"# {self.supernode(node).where}\n{self.supernode(node).shell()}" for node in self.nodes),
            "",
            f"# 4. {self.run().where}: start the run; exits non-zero unless it completed",
            self.run().shell(),
            "# (the same with Flower's CLI alone, which exits 0 even when the run fails:)",
            "# " + self.run(wait=False).shell(),
        ]
        return "\n".join(lines) + "\n"


def shell_quote(arg: str) -> str:
    """`arg` for a POSIX shell, in double quotes where that is enough (`--node-config "data-path='…'"`
    reads better than shlex's quoting of the single quotes inside)."""
    if arg and not re.search(r"[^\w@%+=:,./-]", arg):
        return arg
    if not re.search(r'["$`\\!]', arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def _toml_string(value: str) -> str:
    """A TOML string for Flower's `key=value` parser, which takes quoted values without escapes."""
    if "'" not in value:
        return f"'{value}'"  # a literal string: backslashes stay backslashes
    if '"' in value or "\\" in value:
        raise ValueError(f"{value!r}: a path with both a quote and a double quote or a backslash cannot be passed to Flower")
    return f'"{value}"'


def _toml_value(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    return repr(value)


def connection_toml(deployment: Deployment) -> str:
    """The Flower CLI's config (FLWR_HOME/config.toml): the SuperLink's Control API over TLS."""
    return (f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{deployment.superlink_address}"\nroot-certificates = "{deployment.ca_cert}"\n')


def plan_deployment(root: Path, nodes: int, address: str = "127.0.0.1", profile: str = "hospital", *, port: int = DEFAULT_PORT,
                    node_port: int = DEFAULT_NODE_PORT, data_files: list[Path] | None = None, rounds: int | None = None) -> Deployment:
    """Where everything goes (nothing is written). `data_files`: node i's data file (else a
    `node-<i>.jsonl` to put into its folder)."""
    root = Path(root).resolve()
    planned = []
    for i in range(1, nodes + 1):
        folder = root / "nodes" / f"node-{i}"
        data = Path(data_files[i - 1]).resolve() if data_files else folder / f"node-{i}.jsonl"
        planned.append(Node(f"node-{i}", folder / "auth.key", folder / "auth.pub", folder / "state", data, node_port + i - 1))
    return Deployment(root, address, port, profile, planned, run_config(profile, nodes, rounds))


def write_deployment(deployment: Deployment, *, replace: bool = False, days: int = 365) -> None:
    """Create the keys, certificates, state folders, the CLI's connection and commands.txt.
    `replace`: overwrite keys and certificates of an earlier `init` (the nodes' state is kept)."""
    tls = make_tls_material(deployment.address, days)
    for name, data, mode in (("ca.crt", tls.ca_cert, PUBLIC_MODE), ("ca.key", tls.ca_key, KEY_MODE),
                             ("superlink.crt", tls.server_cert, PUBLIC_MODE), ("superlink.key", tls.server_key, KEY_MODE)):
        create_file(deployment.tls / name, data, mode, replace=replace)
    for node in deployment.nodes:
        key = make_node_key(node.name)
        create_file(node.private_key, key.private_openssh, KEY_MODE, replace=replace)
        create_file(node.public_key, key.public_openssh, PUBLIC_MODE, replace=replace)
        node.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    create_file(deployment.cli_home / "config.toml", connection_toml(deployment).encode(), PUBLIC_MODE, replace=replace)
    create_file(deployment.root / "commands.txt", deployment.commands_text().encode(), PUBLIC_MODE, replace=replace)
