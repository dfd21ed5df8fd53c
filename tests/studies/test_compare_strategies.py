"""`python -m simulations.studies.compare_strategies`: the command line, and one slow end-to-end
`--quick`-sized run on Flower's simulation engine that writes results.json, the plots and the report.
The pieces are tested in tests/studies/comparison/ and tests/studies/test_baselines.py."""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys

import pytest

from simulations.studies.compare_strategies import command_line, settings_from_argv
from simulations.studies.comparison.settings import DEFAULT_REPORT, Settings


def test_the_recorded_command_reruns_the_same_comparison():
    argv = ["--quick", "--out", "a folder/with space", "--epsilons", "8"]
    command = command_line(argv)
    assert command == "python -m simulations.studies.compare_strategies --quick --out 'a folder/with space' --epsilons 8"
    rerun = shlex.split(command)[3:]
    assert settings_from_argv(rerun).out == settings_from_argv(argv).out == "a folder/with space"


def test_the_parsers_defaults_are_the_settings_defaults():
    parsed, defaults = dataclasses.asdict(settings_from_argv([])), dataclasses.asdict(Settings())
    assert parsed.pop("runs_dir").startswith("runs/compare-") and defaults.pop("runs_dir") == ""  # a fresh folder per run
    assert parsed == {**defaults, "report": str(DEFAULT_REPORT)}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_comparison_end_to_end(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "simulations.studies.compare_strategies", "--quick", "--epsilons", "8",
         "--out", str(out), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    entry = results["profiles"]["hospital"]["epsilons"]["8"]
    assert len(entry["local_only"]) == 2
    for local in entry["local_only"].values():
        assert local["epsilon"] <= 8.0 + 1e-9
    run = entry["runs"]["fedsa"]
    assert run["max_rel_diff_vs_federation_eval"] < 1e-3  # in-process evaluation = the federation's own
    for client in run["clients"].values():
        assert client["epsilon_after_federation"] < client["epsilon_after_finetune"] <= 8.0 + 1e-9
    assert run["upload_bytes"]["mean_per_client_per_round"] > 0
    assert {"win_share", "gain"} <= set(results["summary"][0])
    for name in ("perplexity_hospital.png", "gain_vs_epsilon.png", "upload_bytes.png"):
        assert (out / name).stat().st_size > 5_000
    assert "Goals" in (out / "results.md").read_text()
