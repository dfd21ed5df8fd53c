"""The audit's checks on the trained models: the one-run canary bound, membership inference, exposure.

Each takes the run's models (audit.scoring.RunModels), the canary log and the ε the run claims for
one record, and returns an audit.checks.Check with its plot written into the run directory.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audit import exposure as exposure_math
from audit import mia
from audit.checks import FAIL, PASS, SKIPPED, Check, Finding
from audit.one_run import DEFAULT_CONFIDENCE, one_run_audit
from audit.scoring import RunModels
from simulations.canaries import Canary, secret_space

EXPOSURE_CANDIDATES = 2000


def check_one_run(models: RunModels, canaries: Sequence[Canary], claimed_epsilon: float, delta: float, out_dir: Path,
                  confidence: float = DEFAULT_CONFIDENCE) -> Check:
    """Steinke et al.'s bound from canary scores log p_trained − log p_base; fails if above the claimed ε."""
    one_run = [c for c in canaries if c.kind == "one-run"]
    if not one_run:
        return Check("one-run", SKIPPED, "no one-run canaries in this run (fedpriv simulate --canaries M)")
    texts = [c.text for c in one_run]
    base = models.losses(models.base(), texts)
    trained = models.losses(models.global_model(), texts)
    scores = base - trained  # how much better the trained model fits each canary than the base model
    included = np.array([c.included for c in one_run])
    result = one_run_audit(scores, included, delta, confidence)
    findings: list[Finding] = []
    if result.epsilon_lower_bound > claimed_epsilon:
        findings.append(Finding(FAIL, "global adapter", f"empirical ε lower bound {result.epsilon_lower_bound:.3f} exceeds the "
                                                        f"accounted ε {claimed_epsilon:.3f}: the run's privacy claim is false"))
    plot = _histogram(out_dir / "audit_one_run.png", scores[included], scores[~included], result)
    summary = (f"ε lower bound {result.epsilon_lower_bound:.2f} at {confidence:.0%} confidence from {result.canaries} canaries "
               f"(ceiling {result.ceiling:.2f}; {result.correct}/{result.guesses_in + result.guesses_out} guesses right); "
               f"accounted ε {_fmt(claimed_epsilon)}")
    details = {**result.to_dict(), "claimed_epsilon": claimed_epsilon,
               "mean_score_included": float(scores[included].mean()) if included.any() else None,
               "mean_score_excluded": float(scores[~included].mean()) if (~included).any() else None}
    return Check("one-run", FAIL if findings else PASS, summary, details, findings, [plot.name])


def check_membership(models: RunModels, splits: dict[str, tuple[list[str], list[str]]], reference_losses_fn, out_dir: Path) -> Check:
    """Loss and offline-LiRA attacks on the global adapter and on each personalized adapter.

    `splits`: client id → (train records, held-out records). `reference_losses_fn(texts)` → [K, n]
    losses under K reference models trained without any of these records."""
    if not any(train for train, _ in splits.values()) or not any(held for _, held in splits.values()):
        return Check("membership-inference", SKIPPED, "no member / non-member records to attack")
    global_model = models.global_model()
    scores: dict[str, tuple[list[float], list[float]]] = {}  # attack → (member scores, non-member scores)

    def add(name: str, values: np.ndarray, n_members: int) -> None:
        members, non_members = scores.setdefault(name, ([], []))
        members.extend(values[:n_members])
        non_members.extend(values[n_members:])

    for cid, (train, held) in splits.items():
        texts = train + held
        reference = np.atleast_2d(reference_losses_fn(texts))
        for target_name, model in (("global", global_model), ("personalized", models.personalized(cid))):
            if model is None:
                continue
            losses = models.losses(model, texts)
            add(f"{target_name}/loss", mia.loss_attack(losses), len(train))
            add(f"{target_name}/lira", mia.lira_offline(losses, reference), len(train))
    curves = {name: mia.roc(members, non_members) for name, (members, non_members) in scores.items()}
    plot = _roc_plot(out_dir / "audit_mia_roc.png", curves)
    summary = "; ".join(f"{name}: TPR {r.tpr_at[0.001]:.3f} / {r.tpr_at[0.01]:.3f} at FPR 0.1% / 1%, AUC {r.auc:.3f}"
                        for name, r in curves.items())
    details: dict = {name: r.to_dict() for name, r in curves.items()}
    details["strongest_at_1pct"] = max(curves, key=lambda name: curves[name].tpr_at[0.01])
    return Check("membership-inference", PASS, summary, details, [], [plot.name])


def check_exposure(models: RunModels, canaries: Sequence[Canary], out_dir: Path, seed: int = 0,
                   candidates: int = EXPOSURE_CANDIDATES) -> Check:
    """Exposure of each secret canary in the global model, by its format and repetitions."""
    secrets = [c for c in canaries if c.kind != "one-run"]
    if not secrets:
        return Check("exposure", SKIPPED, "no secret canaries in this run")
    model = models.global_model()
    rng = random.Random(seed)
    rows = []
    pools: dict[str, np.ndarray] = {}
    for kind in sorted({c.kind for c in secrets}):
        template, digits = secret_space(kind)
        sample = [template.format(secret="".join(rng.choice("0123456789") for _ in range(digits))) for _ in range(candidates)]
        pools[kind] = models.losses(model, sample)
    for canary in secrets:
        template, digits = secret_space(canary.kind)
        value = exposure_math.exposure(float(models.losses(model, [canary.text])[0]), pools[canary.kind], 10.0 ** digits)
        rows.append({"id": canary.id, "kind": canary.kind, "repetitions": canary.repetitions, "client_id": canary.client_id,
                     **value.to_dict()})
    plot = _exposure_plot(out_dir / "audit_exposure.png", rows)
    by_rep: dict[int, list[float]] = {}
    for row in rows:
        by_rep.setdefault(row["repetitions"], []).append(row["extrapolated"])
    summary = "mean exposure (extrapolated, bits) by repetitions: " + ", ".join(
        f"{rep}×: {np.mean(vals):.1f}" for rep, vals in sorted(by_rep.items())) + f" (of log₂|R| = {rows[0]['space_bits']:.1f} for {rows[0]['kind']})"
    return Check("exposure", PASS, summary, {"canaries": rows, "candidates": candidates}, [], [plot.name])


def _fmt(epsilon: float) -> str:
    return "∞ (no DP)" if not np.isfinite(epsilon) else f"{epsilon:.3f}"


# ---- plots ---------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _histogram(path: Path, included: np.ndarray, excluded: np.ndarray, result) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.histogram_bin_edges(np.concatenate([included, excluded]), bins=40)
    ax.hist(excluded, bins=bins, alpha=0.6, label=f"left out ({len(excluded)})")
    ax.hist(included, bins=bins, alpha=0.6, label=f"trained on ({len(included)})")
    ax.set(xlabel="canary score: NLL under the base model − NLL under the trained model (nats/token)", ylabel="canaries",
           title=f"One-run audit: ε ≥ {result.epsilon_lower_bound:.2f} (ceiling {result.ceiling:.2f})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _roc_plot(path: Path, curves: dict[str, mia.RocResult]) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, r in curves.items():
        ax.plot(np.maximum(r.fpr, 1e-4), np.maximum(r.tpr, 1e-4), label=f"{name} (AUC {r.auc:.2f})")
    ax.plot([1e-4, 1], [1e-4, 1], "k:", linewidth=0.8, label="chance")
    ax.set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate", title="Membership inference (ROC)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _exposure_plot(path: Path, rows: list[dict]) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        ax.scatter([r["repetitions"] for r in mine], [r["extrapolated"] for r in mine], label=kind)
    ax.set(xscale="log", xlabel="repetitions in training", ylabel="exposure (bits)", title="Secret canary exposure")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
