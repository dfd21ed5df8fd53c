"""Secure aggregation over a real localhost deployment: the SuperLink with TLS and SuperNode
authentication, three registered SuperNodes, `fedpriv deploy run` (`flwr run --stream`, checked),
`secure-aggregation=true`. One SuperNode is killed (with every process it started) once the round's
keys are shared; the round completes with the other two, the dead node's masks rebuilt from their
shares. The node is started again before the evaluation (a hospital round waits for all its nodes),
under its registered key and with its state-dir. Every process started is stopped, even on failure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fedpriv.deploy import plan
from simulations.synthetic import generate_federation, write_federation
from tests.deploy import processes as processes_module

ROOT = Path(__file__).resolve().parents[2]  # the fedpriv checkout: the app `flwr run` bundles
NODES = 3
SHARED = "secure aggregation: round 1, share-keys: 3 of 3 nodes answered"
MASKED = "secure aggregation: round 1, masked-input: 2 of 3 nodes answered"

pytestmark = pytest.mark.slow


def _online(deployment) -> int:
    import subprocess

    done = subprocess.run(["flwr", "supernode", "list", plan.CONNECTION, "--format", "json"], capture_output=True, text=True,
                          env=processes_module.environment(FLWR_HOME=str(deployment.cli_home)), check=False)
    try:
        return sum(n["status"] == "online" for n in json.loads(done.stdout)["nodes"])
    except (json.JSONDecodeError, KeyError):
        return 0


def test_a_supernode_killed_after_key_sharing_does_not_cost_the_secure_round(tmp_path, processes):
    data = tmp_path / "data"
    write_federation(data, generate_federation("hospital", NODES, 12, seed=5))
    files = sorted(data.glob("*.jsonl"))
    port, *node_ports = processes_module.free_ports(1 + NODES)
    deployment = plan.plan_deployment(tmp_path / "deploy", NODES, "127.0.0.1", "hospital", port=port, node_port=node_ports[0],
                                      data_files=files, rounds=1)
    plan.write_deployment(deployment)
    wait_for = processes_module.wait_for

    processes.start("superlink", deployment.superlink())
    for node in deployment.nodes:
        wait_for(lambda n=node: processes.run(f"register-{n.name}", deployment.register(n), timeout=60).returncode == 0,
                 timeout=90, interval=2, what=f"registering {node.name}")
    for node in deployment.nodes:
        processes.start(node.name, deployment.supernode(node))
    victim = deployment.nodes[-1]
    try:
        wait_for(lambda: _online(deployment) == NODES, timeout=120, interval=2, what="three SuperNodes online")
        run = processes.start("run", deployment.run(str(ROOT), **{
            "secure-aggregation": True, "min-train-nodes": 2, "round-timeout": 90.0, "max-seq-len": 32, "batch-size": 8,
            "out": str(tmp_path / "run")}), cwd=ROOT)
        wait_for(lambda: SHARED in processes.log("run"), timeout=600, interval=0.5, what="round 1's keys shared")
        processes.stop(victim.name)  # dies after sharing its keys, before sending its masked input
        wait_for(lambda: MASKED in processes.log("run"), timeout=300, interval=1, what="the masked inputs of the other two")
        processes.start(f"{victim.name}-again", deployment.supernode(victim))  # back for the evaluation
        started = time.monotonic()
        while run.poll() is None and time.monotonic() - started < 600:
            time.sleep(1)
        assert run.returncode == 0, processes.tail()
    except BaseException:
        print(processes.tail())
        raise

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    first = metrics["rounds"][0]
    secure = first["secure_aggregation"]
    dead = files[-1].stem  # the victim's client id: its data file's name
    assert metrics["privacy"]["secure_aggregation"] is True
    assert secure["participants"] == secure["shared_keys"] == NODES and secure["in_sum"] == NODES - 1
    assert secure["dropouts_before_key_sharing"] == [] and secure["dropouts_after_key_sharing"] == [dead]
    assert secure["dropouts_recovered"] == 1 and not secure["aborted"] and secure["released"] == "weighted mean"
    assert first["replies"]["train"]["aggregated"]
    assert all(n > 0 for n in secure["bytes_sent"].values())
    # The dead node trained (and spent ε) before it died: its ledger and the server's record agree.
    ledger = json.loads((victim.state_dir / dead / "privacy_ledger.json").read_text())
    assert metrics["privacy"]["record_level"][dead]["steps"] == sum(s[2] for s in ledger["history"]) > 0
