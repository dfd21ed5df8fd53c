"""`fedpriv deploy init`: the keys and certificates are what Flower 1.41 loads, the files have their
modes, and commands.txt uses only flags the installed Flower has."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
import tomllib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key

from fedpriv.cli import main
from fedpriv.deploy.plan import plan_deployment
from fedpriv.deploy.profiles import run_config


def _init(tmp_path, *args: str, capsys=None) -> int:
    return main(["deploy", "init", str(tmp_path / "dep"), *args])


def _modes(root) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()}


def test_files_are_created_with_their_modes(tmp_path):
    assert _init(tmp_path, "--nodes", "2", "--address", "fl.example.org") == 0
    root = tmp_path / "dep"
    modes = _modes(root)
    assert modes == {
        "tls/ca.crt": 0o644, "tls/ca.key": 0o600, "tls/superlink.crt": 0o644, "tls/superlink.key": 0o600,
        "nodes/node-1/auth.key": 0o600, "nodes/node-1/auth.pub": 0o644, "nodes/node-2/auth.key": 0o600, "nodes/node-2/auth.pub": 0o644,
        "cli/config.toml": 0o644, "commands.txt": 0o644,
    }
    assert all((root / "nodes" / f"node-{i}" / "state").stat().st_mode & 0o777 == 0o700 for i in (1, 2))


def test_certificate_is_signed_by_the_ca_for_the_address_and_localhost(tmp_path):
    assert _init(tmp_path, "--nodes", "1", "--address", "fl.example.org") == 0
    tls = tmp_path / "dep" / "tls"
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tls / "superlink.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"fl.example.org", "localhost"}
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    load_pem_private_key((tls / "superlink.key").read_bytes(), None)
    # A TLS client that trusts only ca.crt accepts the server for each of its names, and no other.
    for name, ok in (("fl.example.org", True), ("localhost", True), ("127.0.0.1", True), ("other.example.org", False)):
        assert _handshake(tls, name) == ok, name


def _handshake(tls, server_name: str) -> bool:
    """A TLS handshake over a socket pair: the server with superlink.crt, a client trusting ca.crt."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls / "superlink.crt", tls / "superlink.key")
    client = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    near, far = socket.socketpair()

    def serve() -> None:
        try:
            server.wrap_socket(far, server_side=True).close()
        except (ssl.SSLError, OSError):
            far.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client.wrap_socket(near, server_hostname=server_name).close()
        return True
    except ssl.SSLCertVerificationError:
        near.close()
        return False
    finally:
        thread.join(10)


def test_node_keys_are_what_flower_loads(tmp_path):
    from flwr.cli.supernode.register import try_load_public_key
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes

    assert _init(tmp_path, "--nodes", "2") == 0
    keys = []
    for i in (1, 2):
        folder = tmp_path / "dep" / "nodes" / f"node-{i}"
        private = load_ssh_private_key((folder / "auth.key").read_bytes(), None)  # as flower-supernode reads it
        assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
        assert try_load_public_key(folder / "auth.pub") == public_key_to_bytes(private.public_key())  # as `flwr supernode register`
        keys.append(public_key_to_bytes(private.public_key()))
    assert keys[0] != keys[1]


def _flags(*command: str) -> set[str]:
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, check=True, env={"COLUMNS": "200", "PATH": _path()})
    return set(re.findall(r"(--[a-z][a-z-]+)", done.stdout))


def _path() -> str:
    import os
    import sys
    from pathlib import Path

    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def test_commands_use_only_flags_the_installed_flower_has(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("hospital-a", "hospital-b", "hospital-c"):
        (data / f"{name}.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    assert _init(tmp_path, "--data-dir", str(data), "--address", "10.0.0.5", "--port", "9092") == 0
    root = tmp_path / "dep"
    text = (root / "commands.txt").read_text()
    commands = [line for line in text.splitlines() if line and not line.startswith("#")]
    superlink = [c for c in commands if " flower-superlink " in c]
    register = [c for c in commands if " flwr supernode register " in c]
    supernodes = [c for c in commands if " flower-supernode " in c]
    assert len(superlink) == 1 and len(register) == 3 and len(supernodes) == 3
    for flag in ("--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile", "--enable-supernode-auth"):
        assert flag in superlink[0]
    for i, (line, name) in enumerate(zip(supernodes, ("hospital-a", "hospital-b", "hospital-c"), strict=True), start=1):
        assert f"--root-certificates {root}/tls/ca.crt" in line and f"--auth-supernode-private-key {root}/nodes/node-{i}/auth.key" in line
        assert "--superlink 10.0.0.5:9092" in line
        assert f"""--node-config "data-path='{data}/{name}.jsonl' state-dir='{root}/nodes/node-{i}/state'\"""" in line
    checks = {"flower-superlink": superlink, "flower-supernode": supernodes}
    for program, lines in checks.items():
        known = _flags(program)
        used = {flag for line in lines for flag in re.findall(r" (--[a-z][a-z-]+)", line)}
        assert used <= known, used - known
    assert {f for line in register for f in re.findall(r" (--[a-z][a-z-]+)", line)} <= _flags("flwr", "supernode", "register")
    run = [c for c in commands if " fedpriv deploy run " in c]
    assert len(run) == 1 and "num-clients=3" in run[0] and "profile='hospital'" in run[0]
    # The CLI's connection: TLS with the deployment's CA, as Flower parses it.
    from flwr.cli.flower_config import parse_superlink_connection

    config = tomllib.loads((root / "cli" / "config.toml").read_text())
    connection = parse_superlink_connection(config["superlink"][config["superlink"]["default"]], "fedpriv")
    assert connection.address == "10.0.0.5:9092" and connection.root_certificates == str(root / "tls" / "ca.crt")
    assert not connection.insecure


def test_non_empty_dir_is_refused_unless_forced_and_force_keeps_device_state(tmp_path, capsys):
    assert _init(tmp_path, "--nodes", "1") == 0
    root = tmp_path / "dep"
    ledger = root / "nodes" / "node-1" / "state" / "hospital-00" / "privacy_ledger.json"
    ledger.parent.mkdir(parents=True)
    ledger.write_text("{}")
    old_key = (root / "nodes" / "node-1" / "auth.key").read_bytes()
    capsys.readouterr()
    assert _init(tmp_path, "--nodes", "1") == 2
    assert "is not empty" in capsys.readouterr().err
    assert (root / "nodes" / "node-1" / "auth.key").read_bytes() == old_key
    assert _init(tmp_path, "--nodes", "1", "--force") == 0
    assert (root / "nodes" / "node-1" / "auth.key").read_bytes() != old_key
    assert ledger.read_text() == "{}"  # a device's state is never touched
    assert _modes(root)["nodes/node-1/auth.key"] == 0o600


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "0"], "--nodes: must be at least 1"),
    ([], "--nodes: how many SuperNodes"),
    (["--nodes", "2", "--port", "70000"], "--port: port 70000"),
    (["--nodes", "2", "--rounds", "0"], "--rounds: must be at least 1"),
])
def test_bad_options_are_named(tmp_path, capsys, args, message):
    assert _init(tmp_path, *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "dep").exists()


def test_profiles_differ_as_cross_silo_and_cross_device():
    hospital, phone = run_config("hospital", 4), run_config("phone", 20)
    assert (hospital["dp"], hospital["min-train-nodes"], hospital["min-evaluate-nodes"]) == ("record", 4, 4)
    assert "clients-per-round" not in hospital  # every hospital, every round
    assert phone["dp"] == "client" and phone["clients-per-round"] == 10
    assert phone["min-train-nodes"] < phone["clients-per-round"] and phone["round-timeout"] > 0  # dropouts do not stall a round
    deployment = plan_deployment("/tmp/x", 20, profile="phone")
    assert deployment.run_config["clients-per-round"] == 10


@pytest.mark.parametrize("profile", ["hospital", "phone"])
@pytest.mark.parametrize("nodes", [1, 3, 200])
def test_profile_run_configs_are_valid_run_configs(profile, nodes):
    from fedpriv.config import RunConfig

    config = RunConfig.from_flower(run_config(profile, nodes))  # what the server parses from `--run-config`
    assert config.profile == profile and config.num_clients == nodes
    assert config.min_train_nodes <= (config.clients_per_round or nodes) and config.round_timeout > 0
