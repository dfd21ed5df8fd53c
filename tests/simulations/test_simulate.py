"""End to end: `fedpriv simulate` with 3 clients x 2 rounds on Flower's Ray simulation engine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

RECORD_LEVEL_KEYS = {"epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "accountant"}
# What the server records of each client under record-level DP (the hospital default); the losses and
# held-out metrics stay in the devices' own logs.
CLIENT_KEYS = {"client_id", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps"}
DEVICE_ONLY_KEYS = {"train_loss", "start_perplexity", "eval_loss", "eval_perplexity", "eval_bits_per_byte"}


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


SIMULATE = [sys.executable, "-m", "fedpriv.cli", "simulate"]
RUN_ARGS = ["--num-clients", "3", "--rounds", "2", "--records-per-client", "60", "--finetune-epochs", "1", "--no-progress"]


def _wait_gone(ray_tmpdir: str) -> None:
    deadline = time.time() + 20
    while _ray_processes(ray_tmpdir) and time.time() < deadline:
        time.sleep(1)
    assert not _ray_processes(ray_tmpdir)


def _killed_after_round_1(out: Path, ray_tmpdir: str) -> None:
    """`fedpriv simulate` killed (SIGKILL, with every process it started) once round 1 is checkpointed."""
    from server.server_state import state_path

    proc = subprocess.Popen([*SIMULATE, *RUN_ARGS, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "RAY_TMPDIR": ray_tmpdir}, start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if state_path(out).is_file() and json.loads(state_path(out).read_text())["completed_round"] >= 1:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pid in _ray_processes(ray_tmpdir):  # Ray processes that left the session
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
    _wait_gone(ray_tmpdir)


@pytest.mark.slow
def test_three_clients_two_rounds(tmp_path) -> None:
    out = tmp_path / "run"
    # A short private temp dir (Ray's socket paths must stay under 107 characters).
    ray_tmpdir = tempfile.mkdtemp(prefix="fpray", dir="/tmp")
    proc = subprocess.run(
        [*SIMULATE, *RUN_ARGS, "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "RAY_TMPDIR": ray_tmpdir},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["rounds"] == 2 and metrics["config"]["num_clients"] == 3
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    for entry in metrics["rounds"]:
        assert len(entry["clients"]) == 3
        for client in entry["clients"]:
            assert CLIENT_KEYS <= set(client) and not DEVICE_ONLY_KEYS & set(client), set(client)
    from fedpriv.device_log import device_metrics

    logged = device_metrics(out / "devices")
    assert {r: set(clients) for r, clients in logged.items() if r} == {r["round"]: {c["client_id"] for c in r["clients"]}
                                                                      for r in metrics["rounds"]}
    assert all(DEVICE_ONLY_KEYS <= set(m) for r, clients in logged.items() if r for m in clients.values())
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
    assert "perplexity_epsilon.png" in report and "ε" in report and "device_log.jsonl" in report
    final_rows = [line for line in report.splitlines() if line.startswith("| hospital-")]
    assert len(final_rows) == 3 and all(cell.strip() not in ("", "–") for line in final_rows for cell in line.split("|")[3:5])  # final ppl and bits/byte, from the logs
    assert (out / "perplexity_epsilon.png").stat().st_size > 10_000

    # Personalization on the devices: under the default dp-scope uploads it never leaves the device,
    # so it trains without noise and leaves each device's ledger (and ε) as the federation left it.
    from simulations.personalize_run import personalize_run

    assert metrics["privacy"]["record_level_scope"] == "uploads"
    personalized = personalize_run(out, progress=False)["clients"]
    assert set(personalized) == set(record_level)
    for client_id, result in personalized.items():
        assert result["epsilon"] == pytest.approx(record_level[client_id]["epsilon"])
        assert result["dp_steps"] == record_level[client_id]["steps"]
        assert (out / "devices" / client_id / "personalized_adapter.safetensors").is_file()

    # Every device told the server who it is before round 1, on the untrained adapter.
    assert set(metrics["initial_evaluation"]) == set(record_level)
    assert all(r["replies"]["train"]["aggregated"] and r["dropouts"] == {"train": [], "evaluate": []} for r in metrics["rounds"])

    # No stray Ray processes outlive the run.
    assert list(Path(ray_tmpdir).iterdir()), "the run did not use its private RAY_TMPDIR; the check below would be vacuous"
    _wait_gone(ray_tmpdir)

    # The same run, killed after round 1 and resumed, ends with the same adapter and ε, bit for bit.
    killed = tmp_path / "killed"
    _killed_after_round_1(killed, ray_tmpdir)
    assert not (killed / "report.md").exists()
    proc = subprocess.run([*SIMULATE, "--resume", str(killed), "--no-progress"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAY_TMPDIR": ray_tmpdir})
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    expected = load_file(str(out / "adapters" / "final" / "adapter_model.safetensors"))
    resumed = load_file(str(killed / "adapters" / "final" / "adapter_model.safetensors"))
    assert resumed.keys() == expected.keys() and all(resumed[k].equal(expected[k]) for k in expected)
    resumed_metrics = json.loads((killed / "metrics.json").read_text())
    assert resumed_metrics["resumes"][0]["from_round"] == 2
    assert resumed_metrics["privacy"] == metrics["privacy"]  # every device's ε, from its ledger, which continued
    assert [r["clients"] for r in resumed_metrics["rounds"]] == [r["clients"] for r in metrics["rounds"]]
    _wait_gone(ray_tmpdir)
    shutil.rmtree(ray_tmpdir, ignore_errors=True)


@pytest.mark.slow
def test_a_phone_round_completes_when_one_of_five_sampled_phones_dies(tmp_path) -> None:
    """A real Flower simulation: the ClientApp of one of the five sampled phones raises mid-round."""
    out = tmp_path / "run"
    ray_tmpdir = tempfile.mkdtemp(prefix="fpray", dir="/tmp")
    proc = subprocess.run([sys.executable, "-m", "tests.simulations.dying_phone", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "RAY_TMPDIR": ray_tmpdir})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (first,) = json.loads((out / "metrics.json").read_text())["rounds"]
    assert first["replies"]["train"] == {"sent": 5, "accepted": 4, "rejected": 0, "failed": 1, "no_reply": 0, "minimum": 4,
                                         "aggregated": True}
    assert len(first["failures"]) == 1 and "this phone died mid-round" in first["failures"][0]
    assert sorted(c["client_id"] for c in first["clients"] if c["trained"]) == ["phone-01", "phone-02", "phone-03", "phone-04"]
    # The phone default aggregates securely: the dead phone never shared keys, the other four are the sum.
    secure = first["secure_aggregation"]
    assert secure["dropouts_before_key_sharing"] == ["phone-00"] and secure["in_sum"] == 4 and not secure["aborted"]
    assert (out / "report.md").is_file()
    _wait_gone(ray_tmpdir)
    shutil.rmtree(ray_tmpdir, ignore_errors=True)


def test_resume_keeps_the_settings_it_was_started_with(tmp_path, capsys) -> None:
    from fedpriv.cli import main

    assert main(["simulate", "--resume", str(tmp_path), "--rounds", "5", "--seed", "3"]) == 2
    assert "resume: a resumed run keeps the settings it was started with; drop --rounds, --seed" in capsys.readouterr().err
    assert main(["simulate", "--resume", str(tmp_path)]) == 2
    assert "no server checkpoint" in capsys.readouterr().err
