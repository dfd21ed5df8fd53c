"""`flwr run .` on a fresh copy of the repository, as a new user runs it: Flower's own local
simulation SuperLink, no data prepared beforehand, no Flower config of the user's. It completes and
writes the run directory; and `fedpriv deploy run` exits non-zero for a run that fails."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fedpriv.deploy.plan import Command
from tests.deploy.processes import free_ports

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _fresh_copy(dest: Path) -> Path:
    """The files a clone has (git's list when this is a checkout), in a folder named like the project."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    for name in filter(None, listed):
        if name.startswith("docs/") or not (ROOT / name).is_file():
            continue  # the docs are large and not part of the app
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


def test_flwr_run_on_a_fresh_copy_completes_and_a_failing_run_exits_non_zero(tmp_path, processes):
    app = _fresh_copy(tmp_path / "fedpriv")
    http, control = free_ports(2)
    env = {"FLWR_HOME": str(tmp_path / "flwr-home"), "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(http),
           "FLWR_LOCAL_CONTROL_API_PORT": str(control)}
    small = "records-per-client=16 max-seq-len=32 batch-size=8"
    done = processes.run("flwr-run", Command(["flwr", "run", ".", "--stream", "--run-config", f"rounds=1 {small}"], env),
                         timeout=900, cwd=app)
    assert done.returncode == 0, processes.tail()
    (run_dir,) = (app / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1]
    assert len(metrics["privacy"]["record_level"]) == 2  # Flower's default local simulation: two SuperNodes
    assert all(p["epsilon"] > 0 for p in metrics["privacy"]["record_level"].values())
    assert (run_dir / "data").is_dir() and (run_dir / "report.md").is_file() and (run_dir / "adapters" / "final").is_dir()
    assert str(run_dir) in done.stdout  # the ServerApp says where it wrote
    assert (app / "pyproject.toml").read_bytes() == (ROOT / "pyproject.toml").read_bytes()  # flwr rewrote nothing

    failing = processes.run("deploy-run", Command(["fedpriv", "deploy", "run", ".", "--run-config", f"rounds=1 {small} model='/nowhere'"], env),
                            timeout=600, cwd=app)
    assert failing.returncode == 1, processes.tail()
    assert "finished:failed" in failing.stdout and "model path not found: /nowhere" in failing.stdout
