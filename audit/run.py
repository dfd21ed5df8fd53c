"""Run the audit's checks on a run directory and write audit.md, audit.json and the plots into it."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audit.accounting import audit_accounting
from audit.checks import Check
from audit.report import write_report
from fedpriv.errors import DataError
from server.run_record import loads_metrics

PARTS = ("accounting", "released", "one-run", "mia", "exposure")
MODEL_PARTS = ("one-run", "mia", "exposure")


def load_metrics(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; RUN_DIR must be a run directory written by `fedpriv simulate` or `flwr run`")
    try:
        return loads_metrics(path.read_text())  # metrics.json's own reader: "inf" in a numeric field is ∞
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def claimed_record_epsilon(metrics: dict[str, Any]) -> float:
    """The ε the run claims for any one record: the tightest of its record-level (worst device)
    and client-level guarantees (protecting a whole device protects each of its records); ∞ without DP."""
    privacy = metrics.get("privacy", {})
    claims = [float(e["epsilon"]) for e in (privacy.get("record_level") or {}).values() if "epsilon" in e]
    record = max(claims) if claims else math.inf
    client = float(privacy["client_level"]["epsilon"]) if privacy.get("client_level") else math.inf
    return min(record, client)


def synthetic_data(metrics: dict[str, Any]) -> bool:
    """Whether the run trained on synthetic data that `fedpriv simulate` wrote into RUN_DIR/data."""
    config = metrics.get("config", {})
    return bool(config.get("out")) and Path(str(config.get("data_dir", ""))) == Path(str(config["out"])) / "data"


def audit_run(run_dir: Path, parts: Sequence[str] = PARTS, reference_models: int = 4, progress=None) -> list[Check]:
    """The checks in `parts`, in order; `progress(text)` is told what runs."""
    run_dir = Path(run_dir)
    metrics = load_metrics(run_dir)
    say = progress or (lambda text: None)
    checks: list[Check] = []
    if "accounting" in parts:
        say("recomputing ε with dp-accounting (PLD)")
        checks.append(audit_accounting(metrics, run_dir / "devices"))
    if "released" in parts:
        from audit.released import audit_released

        checks.append(audit_released(metrics))
    wanted = [p for p in parts if p in MODEL_PARTS]
    if wanted:
        checks += _model_checks(run_dir, metrics, wanted, reference_models, say)
    return checks


def _model_checks(run_dir: Path, metrics: dict[str, Any], parts: Sequence[str], reference_models: int, say) -> list[Check]:
    from audit.model_checks import check_exposure, check_membership, check_one_run
    from audit.reference import reference_losses
    from audit.scoring import RunModels
    from fedpriv.data import list_client_files, split_client_file
    from server.server_app import strategy_name
    from simulations.canaries import CANARY_FILE, load_canaries
    from simulations.personalize_run import load_run_config

    config = load_run_config(run_dir)
    models = RunModels(run_dir, config, strategy_name(config))
    canaries = load_canaries(run_dir) if (run_dir / CANARY_FILE).is_file() else []
    delta = float(config.delta)
    checks: list[Check] = []
    if "one-run" in parts:
        say(f"scoring {sum(c.kind == 'one-run' for c in canaries)} one-run canaries")
        checks.append(check_one_run(models, canaries, claimed_record_epsilon(metrics), delta, run_dir))
    if "mia" in parts:
        canary_texts = {c.text for c in canaries}
        splits = {}
        for path in list_client_files(Path(config.data_dir)):
            split = split_client_file(path, config.eval_fraction, config.seed)
            splits[split.client_id] = ([t for t in split.train if t not in canary_texts], split.held_out)
        say(f"training {reference_models} reference models and attacking membership")
        checks.append(check_membership(models, splits, reference_losses(models, synthetic_data(metrics), reference_models), run_dir))
    if "exposure" in parts:
        say("measuring secret canary exposure")
        checks.append(check_exposure(models, canaries, run_dir))
    return checks


def audit_and_report(run_dir: Path, parts: Sequence[str] = PARTS, reference_models: int = 4, progress=None) -> tuple[list[Check], Path]:
    checks = audit_run(run_dir, parts, reference_models, progress)
    return checks, write_report(Path(run_dir), checks)
