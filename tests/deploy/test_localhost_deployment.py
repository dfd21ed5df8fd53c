"""A real deployment on localhost, started with exactly the commands `fedpriv deploy init` writes:
`flower-superlink` with TLS and SuperNode authentication, three registered `flower-supernode`
processes each with its own data file and state-dir, and `fedpriv deploy run` (`flwr run --stream`
checked) for two rounds. A SuperNode with an unregistered key is refused, and one without the CA
certificate cannot connect. Every process started is stopped, even when the test fails."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from fedpriv.deploy.credentials import KEY_MODE, PUBLIC_MODE, create_file, make_node_key
from fedpriv.deploy.plan import Command, Node, plan_deployment, write_deployment
from simulations.synthetic import generate_federation, write_federation
from tests.deploy.processes import environment, free_ports, wait_for

ROOT = Path(__file__).resolve().parents[2]  # the fedpriv checkout: the app `flwr run` bundles
NODES = 3

pytestmark = pytest.mark.slow


def _online(deployment) -> set[int]:
    done = subprocess.run(["flwr", "supernode", "list", "fedpriv", "--format", "json"], capture_output=True, text=True,
                          env=environment(FLWR_HOME=str(deployment.cli_home)), check=False)
    try:
        return {int(n["node-id"]) for n in json.loads(done.stdout)["nodes"] if n["status"] == "online"}
    except (json.JSONDecodeError, KeyError):
        return set()


def test_tls_deployment_with_authenticated_supernodes(tmp_path, processes):
    started = time.monotonic()
    data = tmp_path / "data"
    write_federation(data, generate_federation("hospital", NODES + 1, 12, seed=5))
    files = sorted(data.glob("*.jsonl"))
    port, *node_ports = free_ports(1 + NODES + 2)
    deployment = plan_deployment(tmp_path / "deploy", NODES, "127.0.0.1", "hospital", port=port, node_port=node_ports[0],
                                 data_files=files[:NODES], rounds=2)
    write_deployment(deployment)
    # Two impostors: a key nobody registered, and a registered key without the CA certificate to
    # trust the SuperLink with.
    intruder = _extra_node(tmp_path / "intruder", files[NODES], node_ports[NODES])
    untrusted = _extra_node(tmp_path / "untrusted", files[NODES], node_ports[NODES + 1])

    processes.start("superlink", deployment.superlink())
    for node in [*deployment.nodes, untrusted]:
        wait_for(lambda n=node: processes.run(f"register-{n.name}", deployment.register(n), timeout=60).returncode == 0,
                 timeout=90, interval=2, what=f"registering {node.name} (the SuperLink's Control API over TLS)")
    for node in deployment.nodes:
        processes.start(node.name, deployment.supernode(node))
    bounded = ["--max-retries", "1", "--max-wait-time", "20"]
    impostor = processes.start("intruder", _with(deployment.supernode(intruder), bounded))
    untrusting = processes.start("no-ca", _with(deployment.supernode(untrusted, trust_ca=False), bounded))

    try:
        wait_for(lambda: len(_online(deployment)) == NODES, timeout=120, interval=2, what="three SuperNodes online")
        run = processes.run("run", deployment.run(str(ROOT), **{"max-seq-len": 32, "batch-size": 8, "out": str(tmp_path / "run")}),
                            timeout=600, cwd=ROOT)
        assert run.returncode == 0, processes.tail()
        assert impostor.wait(timeout=120) != 0 and untrusting.wait(timeout=120) != 0
    except BaseException:
        print(processes.tail())
        raise

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    clients = {f.stem for f in files[:NODES]}
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert {c["client_id"] for r in metrics["rounds"] for c in r["clients"]} == clients  # nobody else took part
    record_level = metrics["privacy"]["record_level"]
    assert set(record_level) == clients
    for node, data_file in zip(deployment.nodes, files, strict=False):
        ledger = json.loads((node.state_dir / data_file.stem / "privacy_ledger.json").read_text())
        steps = sum(s[2] for s in ledger["history"])
        assert record_level[data_file.stem]["steps"] == steps > 0  # the ε the server reports is the device's own ledger's
        assert 0 < record_level[data_file.stem]["epsilon"] <= 8.0 + 1e-9
    assert "No SuperNode found with the given public key" in processes.log("superlink")
    assert "CERTIFICATE_VERIFY_FAILED" in processes.log("no-ca")
    assert not intruder.state_dir.exists() and not untrusted.state_dir.exists()  # they never got a message
    print(f"localhost deployment: {time.monotonic() - started:.0f} s")


def _extra_node(folder: Path, data_file: Path, port: int) -> Node:
    key = make_node_key(folder.name)
    private = create_file(folder / "auth.key", key.private_openssh, KEY_MODE)
    public = create_file(folder / "auth.pub", key.public_openssh, PUBLIC_MODE)
    return Node(folder.name, private, public, folder / "state", data_file, port)


def _with(command: Command, extra: list[str]) -> Command:
    return Command([*command.argv, *extra], command.env, command.where)
