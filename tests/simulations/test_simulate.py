"""End to end: `fedpriv simulate` with 3 clients x 2 rounds on Flower's Ray simulation engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import psutil
import pytest

RECORD_LEVEL_KEYS = {"epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "accountant"}
CLIENT_KEYS = {"client_id", "train_loss", "eval_perplexity", "eval_bits_per_byte", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps"}


def _ray_processes(ray_tmpdir: str) -> set[int]:
    """Ray processes of this run only: they carry its private RAY_TMPDIR in their command lines
    (other Ray clusters on the machine, e.g. a parallel job, must not count)."""
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if ray_tmpdir in cmd and proc.info["pid"] != os.getpid():
            found.add(proc.info["pid"])
    return found


@pytest.mark.slow
def test_three_clients_two_rounds(tmp_path) -> None:
    out = tmp_path / "run"
    # A short private temp dir (Ray's socket paths must stay under 107 characters).
    ray_tmpdir = tempfile.mkdtemp(prefix="fpray", dir="/tmp")
    proc = subprocess.run(
        [sys.executable, "-m", "fedpriv.cli", "simulate", "--num-clients", "3", "--rounds", "2",
         "--records-per-client", "60", "--finetune-epochs", "1", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_TMPDIR": ray_tmpdir},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["rounds"] == 2 and metrics["config"]["num_clients"] == 3
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    for entry in metrics["rounds"]:
        assert len(entry["clients"]) == 3
        for client in entry["clients"]:
            assert CLIENT_KEYS <= set(client), set(client)
    record_level = metrics["privacy"]["record_level"]
    assert len(record_level) == 3
    for client_id, privacy in record_level.items():
        assert RECORD_LEVEL_KEYS <= set(privacy)
        eps = [next(c["epsilon"] for c in r["clients"] if c["client_id"] == client_id) for r in metrics["rounds"]]
        assert eps[0] < eps[1] == pytest.approx(privacy["epsilon"])

    # Global adapter after every round, loadable by peft on the base model.
    from peft import PeftModel

    from fedpriv.modeling import load_base_model

    for name in ("round-000", "round-001", "round-002", "final"):
        assert (out / "adapters" / name / "adapter_model.safetensors").is_file()
    model = PeftModel.from_pretrained(load_base_model("default"), str(out / "adapters" / "final"))
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in model.named_parameters())

    report = (out / "report.md").read_text()
    assert "perplexity_epsilon.png" in report and "ε" in report
    assert (out / "perplexity_epsilon.png").stat().st_size > 10_000

    # Personalization on the devices continues each device's ledger: ε grows past the federation's.
    from simulations.personalize_run import personalize_run

    personalized = personalize_run(out, progress=False)["clients"]
    assert set(personalized) == set(record_level)
    for client_id, result in personalized.items():
        assert result["epsilon"] > record_level[client_id]["epsilon"]
        assert result["dp_steps"] > record_level[client_id]["steps"]
        assert (out / "devices" / client_id / "personalized_adapter.safetensors").is_file()

    # No stray Ray processes outlive the run.
    assert list(Path(ray_tmpdir).iterdir()), "the run did not use its private RAY_TMPDIR; the check below would be vacuous"
    deadline = time.time() + 20
    while _ray_processes(ray_tmpdir) and time.time() < deadline:
        time.sleep(1)
    assert not _ray_processes(ray_tmpdir)
    shutil.rmtree(ray_tmpdir, ignore_errors=True)
