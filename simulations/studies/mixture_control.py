"""How much of the personalization's gain needs the federation at all?

    python -m simulations.studies.mixture_control docs/studies/seeds-hospital-uploads

The personalized model is a mixture λ·p_federated + (1 − λ)·p_private with λ chosen on a
validation slice. Mixing in *any* broader distribution smooths a small model's over-confident
predictions, so part of its gain over local-only could come from the mixture itself rather than
from what the federation learned. The first control removes the federation: each device's
local-only model (trained without DP exactly as the comparison trains it: same seed, same fit and
validation slices, same early stopping) mixed with the **base model**, λ chosen from the same grid
on the same slice. A second control removes only what the federation learned: the whole
personalization (fine-tuning with early stopping, the better of the fine-tuned and the from-scratch
model, λ on validation) run from the **untrained** global adapter (the initial LoRA, B = 0, i.e. the
base model). Personalization's gain beyond that control is what the federation's training contributes.

It reads a seed study's folder (or one comparison's results.json), retrains each client's local-only
model, checks it reproduces the perplexity the study recorded for local-only without DP (else the
machine, the libraries or the code changed and the comparison would be meaningless: it stops), and writes
`mixture-control.json` and `mixture-control.md` next to the results. About 6 min for 24 clients
on 2 cores (two to three trainings per client).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulations.studies.comparison import workers
from simulations.studies.comparison.formatting import fmt_eps
from simulations.studies.comparison.orchestration import load_clients, prepare_data
from simulations.studies.comparison.reuse import environment_differences
from simulations.studies.comparison.settings import Settings


@dataclass(frozen=True)
class Control:
    local_only: float  # held-out perplexity of the local-only model (no DP)
    control: float  # ... of its mixture with the base model
    global_weight: float  # λ of the base model, chosen on the validation slice
    untrained_global: float  # the personalization pipeline from the untrained global adapter


def mixture_with_base(models, config, client_id: str, train, held_out) -> Control:
    """The controls for one device: its no-DP local-only model mixed with the base model, and the
    whole personalization run from the untrained global adapter."""
    from client.dp_training import mean_nll, perplexity_from_loss, token_log_probs
    from client.interpolation import mixture_loss
    from client.personalize import personalize, train_from_scratch_selected, validation_split
    from fedpriv.modeling import adapter_state
    from client.selection import choose_global_weight

    fit, validation = validation_split(config, client_id, train)
    model, stopped = train_from_scratch_selected(models, config, client_id, fit, validation)
    # A fresh adapter starts with B = 0: its log-probabilities are the base model's.
    weight = choose_global_weight(stopped.start_log_probs, stopped.log_probs)
    local = token_log_probs(model, held_out)
    fresh = models.lora_model(config)  # the untrained adapter: B = 0, so it predicts as the base model
    base = token_log_probs(fresh, held_out)
    untrained = adapter_state(fresh)
    with tempfile.TemporaryDirectory() as device_dir:  # fedavg without DP keeps nothing on the device
        no_federation = personalize(models, config, "fedavg", client_id, untrained, Path(device_dir), train, held_out, from_scratch=stopped)
    return Control(perplexity_from_loss(mean_nll(local)), perplexity_from_loss(mixture_loss(base, local, weight)), weight,
                   no_federation.interpolated.perplexity)


def control_task(config, client) -> Control:
    """`mixture_with_base` for one client, in a worker of `workers.make_pool` (or where a device side is installed)."""
    side = workers.current()
    return mixture_with_base(side.models, config, client.client_id, side.encode(client.train, config), side.encode(client.held_out, config))


def results_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    found = sorted(path.glob("seed-*/results.json"))
    if not found:
        raise SystemExit(f"{path}: neither a results.json nor a seed study folder (seed-<N>/results.json)")
    return found


def controls_for(results_file: Path, pool) -> list[dict[str, Any]]:
    """One row per (profile, client, privacy level) of one comparison, with the control added."""
    results = json.loads(results_file.read_text())
    settings = Settings(**{k: v for k, v in results["settings"].items() if k in Settings.__dataclass_fields__})
    environment = environment_differences(results, settings.model)
    if environment:
        raise SystemExit(f"{results_file}: made on another machine ({'; '.join(environment)}); its local-only models cannot be reproduced here")
    rows = []
    for profile, section in results["profiles"].items():
        with tempfile.TemporaryDirectory() as scratch:  # the synthetic federation is rebuilt from the seed
            data_dir = prepare_data(profile, settings, Path(scratch))
            clients = load_clients(data_dir, settings)
            config = settings.run_config(profile, None, settings.strategies[0], str(data_dir), "")
            controls = dict(zip((c.client_id for c in clients), pool.map(control_task, [config] * len(clients), clients)))
        recorded = section["epsilons"].get("none", {}).get("local_only", {})
        for client_id, control in controls.items():
            if client_id in recorded and not math.isclose(recorded[client_id]["perplexity"], control.local_only, rel_tol=1e-6):
                raise SystemExit(f"{results_file}: {client_id}'s local-only model gives {control.local_only:.3f} here, "
                                 f"{recorded[client_id]['perplexity']:.3f} in the study: not reproduced, so no control")
        for label, entry in section["epsilons"].items():
            for strategy, run in entry["runs"].items():
                for client_id, row in run["clients"].items():
                    control = controls[client_id]
                    rows.append({"seed": results["settings"]["seed"], "profile": profile, "privacy": label, "strategy": strategy,
                                 "client": client_id, "global_only": row["global_only"], "local_only": entry["local_only"][client_id]["perplexity"],
                                 "personalized": row["personalized"], "local_only_no_dp": control.local_only,
                                 "control": control.control, "control_weight": control.global_weight,
                                 "untrained_global": control.untrained_global})
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (profile, privacy, strategy): mean perplexities, gains over the better baseline, and counts."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["profile"], row["privacy"], row["strategy"]), []).append(row)
    summary = []
    for (profile, privacy, strategy), group in groups.items():
        def mean(key: str) -> float:
            return statistics.fmean(r[key] for r in group)

        def beats_both(key: str) -> int:
            return sum(r[key] < r["global_only"] and r[key] < r["local_only"] for r in group)

        def gain(key: str) -> float:  # perplexity points below the better baseline (comparison.goals.gain)
            return statistics.fmean(min(r["global_only"], r["local_only"]) - r[key] for r in group)

        summary.append({
            "profile": profile, "privacy": privacy, "strategy": strategy, "clients": len(group),
            "global_only": mean("global_only"), "local_only": mean("local_only"), "control": mean("control"), "personalized": mean("personalized"),
            "gain_personalized": gain("personalized"), "gain_control": gain("control"),
            "untrained_global": mean("untrained_global"), "gain_untrained_global": gain("untrained_global"),
            "personalized_beats_both": beats_both("personalized"), "control_beats_both": beats_both("control"),
            "personalized_beats_control": sum(r["personalized"] < r["control"] for r in group),
            "untrained_global_beats_both": beats_both("untrained_global"),
            "personalized_beats_untrained_global": sum(r["personalized"] < r["untrained_global"] for r in group),
        })
    return summary


def report(summary: Sequence[dict[str, Any]], command: str) -> str:
    lines = [
        "# Controls without the federation", "",
        "_Generated by `simulations/studies/mixture_control.py` (its docstring says why); rerun the command to regenerate._", "",
        f"```bash\n{command}\n```", "",
        "- **base mix** = the device's no-DP local-only model mixed with the base model, λ chosen on the same validation slice "
        "and grid as the personalization's;",
        "- **untrained global** = the whole personalization (fine-tuning, the better private model, λ) run from the untrained "
        "global adapter, i.e. a federation that learned nothing.", "",
        "Gains are perplexity points below the better of global-only and local-only (the comparison's own baselines at that "
        "privacy level), averaged over clients; \"beats both\" counts clients below both baselines.", "",
        "| profile | privacy | strategy | clients | global-only | local-only | base mix | untrained global | personalized "
        "| gain: base mix | gain: untrained global | gain: personalized | beats both: base mix / untrained global / personalized "
        "| personalized beats untrained global |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        n = s["clients"]
        lines.append(
            f"| {s['profile']} | {fmt_eps(s['privacy'])} | {s['strategy']} | {n} | {s['global_only']:.1f} | {s['local_only']:.1f} | "
            f"{s['control']:.1f} | {s['untrained_global']:.1f} | {s['personalized']:.1f} | {s['gain_control']:+.2f} | "
            f"{s['gain_untrained_global']:+.2f} | {s['gain_personalized']:+.2f} | "
            f"{s['control_beats_both']}/{n} / {s['untrained_global_beats_both']}/{n} / {s['personalized_beats_both']}/{n} | "
            f"{s['personalized_beats_untrained_global']}/{n} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import shlex

    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m simulations.studies.mixture_control", description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("study", help="a seed study's folder (seed-<N>/results.json) or one comparison's results.json")
    parser.add_argument("--workers", type=int, default=2, help="processes, one torch thread each")
    args = parser.parse_args(argv)
    console = Console()
    files = results_files(Path(args.study))
    settings = json.loads(files[0].read_text())["settings"]
    rows: list[dict[str, Any]] = []
    with workers.make_pool(settings.get("model", "default"), max(1, args.workers)) as pool:
        for index, path in enumerate(files, 1):
            console.print(f"{path} ({index}/{len(files)})")
            rows += controls_for(path, pool)
    summary = summarize(rows)
    out = Path(args.study) if Path(args.study).is_dir() else Path(args.study).parent
    command = "python -m simulations.studies.mixture_control" + "".join(" " + shlex.quote(a) for a in argv)
    (out / "mixture-control.json").write_text(json.dumps({"command": command, "summary": summary, "rows": rows}, indent=1))
    (out / "mixture-control.md").write_text(report(summary, command))
    console.print(report(summary, command))
    console.print(f"wrote {out / 'mixture-control.json'} and {out / 'mixture-control.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
