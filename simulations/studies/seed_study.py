"""The strategy comparison repeated over several seeds, pooled, with confidence intervals.

    python -m simulations.studies.seed_study --seeds 0-5 --profiles hospital --epsilons none,8 --strategies fedavg

One seed of `simulations.studies.compare_strategies` draws one synthetic federation (4 hospitals), one
train/held-out split and one set of DP noise. Its hospital gain kept at ε = 8 ranged from 66 % to
189 % over seeds 0-5 with nothing else changed, so a single seed cannot say whether a goal is met. This runs
the same comparison once per seed (every option except `--seed`, `--out`, `--report` and
`--runs-dir` is passed to compare_strategies unchanged; with `--data DIR` the seeds vary the
train/held-out split and the DP noise, not the data) and pools:

* **win share** over every (seed, client) pair, with a 95 % bootstrap interval over seeds;
* **gain kept** at ε = 8 as the ratio of the mean gains over seeds,
  mean_s gain_s(ε=8) / mean_s gain_s(no DP), with a 95 % bootstrap interval that resamples whole
  seeds (the clients of one seed share a federation, so they are not independent); the per-seed
  ratios are listed too.

Each seed's own results (results.json, plots, report) go to `<out>/seed-<N>/`. A seed whose
results.json is already there with the same settings is reused, not rerun, so an interrupted study
resumes; one with different settings is refused. Writes `<out>/seeds.json`, `<out>/seeds.png` and the
report (default `docs/studies/seeds.md` for the default `--out docs/studies/seeds`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import math
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fedpriv.config import DP_SCOPE_COVERS
from simulations.studies.compare_strategies import command_line, settings_from_argv
from simulations.studies.comparison import orchestration
from simulations.studies.comparison.formatting import config_sort_key, epsilon_label, fmt_eps, json_ready, md_table, pct
from simulations.studies.comparison.goals import GAIN_KEPT_EPSILON, GOAL_GAIN_KEPT, GOAL_WIN_SHARE, client_rows, gain_kept, summarize
from simulations.studies.comparison.report import selection_note, weight_note
from simulations.studies.comparison.reuse import as_recorded_now, describe_differences, differing_settings, environment_differences

DEFAULT_OUT = Path("docs/studies/seeds")
DEFAULT_REPORT = Path("docs/studies/seeds.md")
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
# Settings that legitimately differ between the seeds of one study.
PER_SEED_FIELDS = ("seed", "out", "report", "runs_dir", "no_dp_from")


def parse_seeds(text: str) -> list[int]:
    """'0-5' or '0,1,2' (or a mix: '0-2,7') → distinct seeds in the given order."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                low, high = (int(x) for x in part.split("-", 1))
                if high < low:
                    raise ValueError
                seeds.extend(range(low, high + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise SystemExit(f"--seeds: {part!r} is not a seed or a range like 0-5") from None
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--seeds: a seed is listed twice in {text!r}")
    if len(seeds) < 2:
        raise SystemExit(f"--seeds: a study needs at least 2 seeds, got {text!r}")
    return seeds


# ---------------------------------------------------------------------------------------------
# Pooling (pure, unit-tested)


def bootstrap_interval(
    units: Sequence[Any], statistic: Callable[[Sequence[Any]], float | None], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic` over resampled `units` (with replacement).
    Resamples where the statistic is undefined (None) are dropped; None if more than 5 % are."""
    rng = random.Random(seed)
    values = [statistic([units[rng.randrange(len(units))] for _ in units]) for _ in range(resamples)]
    defined = sorted(v for v in values if v is not None)
    if len(defined) < 0.95 * resamples:
        return None
    tail = (1 - CONFIDENCE) / 2
    return defined[int(tail * (len(defined) - 1))], defined[int(math.ceil((1 - tail) * (len(defined) - 1)))]


def ratio_of_means(pairs: Sequence[tuple[float, float]]) -> float | None:
    """mean(private gains) / mean(non-private gains); None when the non-private mean is not positive."""
    denominator = statistics.fmean(p[1] for p in pairs)
    return statistics.fmean(p[0] for p in pairs) / denominator if denominator > 0 else None


def pool(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Pool the per-seed results.json contents (keyed by seed) into win shares and gain kept."""
    summaries = {seed: summarize(client_rows(results)) for seed, results in per_seed.items()}
    seeds = list(summaries)
    keys = sorted(set().union(*summaries.values()), key=config_sort_key)
    win_share: list[dict[str, Any]] = []
    for key in keys:
        present = [s for s in seeds if key in summaries[s]]
        wins = [(summaries[s][key]["wins"], summaries[s][key]["clients"]) for s in present]

        def share(sample: Sequence[tuple[int, int]]) -> float:
            return sum(w for w, _ in sample) / sum(n for _, n in sample)

        pooled = share(wins)
        win_share.append({
            "profile": key[0], "privacy": key[1], "strategy": key[2], "seeds": len(present),
            "wins": sum(w for w, _ in wins), "clients": sum(n for _, n in wins), "win_share": pooled,
            "interval": bootstrap_interval(wins, share), "goal_met": pooled >= GOAL_WIN_SHARE,
            "per_seed": {s: summaries[s][key]["win_share"] for s in present},
            "mean_gain": statistics.fmean(summaries[s][key]["gain"] for s in present),
        })
    pooled_kept: list[dict[str, Any]] = []
    per_seed_kept = {s: gain_kept(summaries[s]) for s in seeds}
    for profile, strategy in sorted(set().union(*per_seed_kept.values())):
        items = {s: per_seed_kept[s][(profile, strategy)] for s in seeds if (profile, strategy) in per_seed_kept[s]}
        pairs = [(i["gain_private"], i["gain_non_private"]) for i in items.values()]
        kept = ratio_of_means(pairs)
        # The same in nats (mean ln-perplexity saved): perplexity points flatter the private side,
        # whose baselines sit at a higher perplexity, so both are reported.
        label = epsilon_label(GAIN_KEPT_EPSILON)
        nats = [(summaries[s][(profile, label, strategy)]["gain_nats"], summaries[s][(profile, "none", strategy)]["gain_nats"]) for s in items]
        interval = bootstrap_interval(pairs, ratio_of_means)
        pooled_kept.append({
            "profile": profile, "strategy": strategy, "epsilon": GAIN_KEPT_EPSILON, "seeds": len(items),
            "gain_private": statistics.fmean(p[0] for p in pairs), "gain_non_private": statistics.fmean(p[1] for p in pairs),
            "kept": kept, "interval": interval,
            "gain_nats_private": statistics.fmean(n[0] for n in nats), "gain_nats_non_private": statistics.fmean(n[1] for n in nats),
            "kept_nats": ratio_of_means(nats), "interval_nats": bootstrap_interval(nats, ratio_of_means),
            "goal_met": kept is not None and kept >= GOAL_GAIN_KEPT,
            "goal_met_at_lower_bound": interval is not None and interval[0] >= GOAL_GAIN_KEPT,
            "per_seed": {s: {"kept": i["kept"], "gain_private": i["gain_private"], "gain_non_private": i["gain_non_private"],
                             "kept_nats": ratio_of_means([n])} for (s, i), n in zip(items.items(), nats)},
        })
    return {"seeds": seeds, "win_share": win_share, "gain_kept": pooled_kept}


# ---------------------------------------------------------------------------------------------
# Running the seeds


def comparable(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in PER_SEED_FIELDS}


def reusable(results_file: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The finished results of one seed if they were made with the wanted settings; SystemExit if
    they were made with others (mixing them into one study would be wrong)."""
    if not results_file.exists():
        return None
    results = json.loads(results_file.read_text())
    if results.get("settings", {}).get("seed") != wanted["seed"]:
        raise SystemExit(f"{results_file} holds seed {results.get('settings', {}).get('seed')!r}, not {wanted['seed']}; move it away")
    found = results.get("settings", {})
    differing = differing_settings(found, wanted, PER_SEED_FIELDS)
    if differing:
        raise SystemExit(
            f"{results_file} was made with other settings ({', '.join(differing)} differ: "
            f"{describe_differences(found, wanted, differing)}); "
            "pass the same options, move it away, or use another --out for this study"
        )
    environment = environment_differences(results, wanted["model"])
    if environment:
        raise SystemExit(f"{results_file} was made on another machine ({'; '.join(environment)}); "
                         "move it away or use another --out for this study")
    return results


def run_seeds(seeds: Sequence[int], passthrough: Sequence[str], out: Path, runs_dir: Path, console,
              no_dp_from: Path | None = None) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """Each seed's comparison (reused when already there). `no_dp_from`: an earlier study's folder
    whose seed-<N>/results.json supply each seed's no-DP rows (compare_strategies --no-dp-from)."""
    per_seed: dict[int, dict[str, Any]] = {}
    reused: list[int] = []
    for index, seed in enumerate(seeds, 1):
        argv = [*passthrough, "--seed", str(seed), "--out", str(out / f"seed-{seed}"), "--runs-dir", str(runs_dir / f"seed-{seed}")]
        if no_dp_from is not None:
            argv += ["--no-dp-from", str(no_dp_from / f"seed-{seed}" / "results.json")]
        settings = settings_from_argv(argv)
        wanted = json.loads(json.dumps(json_ready(dataclasses.asdict(settings))))
        found = reusable(out / f"seed-{seed}" / "results.json", wanted)
        if found is not None:
            console.print(f"[bold]seed {seed}[/] ({index}/{len(seeds)}): reusing {out / f'seed-{seed}' / 'results.json'}")
            per_seed[seed] = found
            reused.append(seed)
            continue
        console.print(f"[bold]seed {seed}[/] ({index}/{len(seeds)}): running the comparison")
        per_seed[seed] = json.loads(json.dumps(json_ready(orchestration.run(settings, command_line(argv)))))
    return per_seed, reused


# ---------------------------------------------------------------------------------------------
# Output


def _interval(interval: Sequence[float] | None) -> str:
    return "n/a" if interval is None else f"{pct(interval[0])} – {pct(interval[1])}"


def plot(study: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = study["gain_kept"]
    fig, axes = plt.subplots(max(len(items), 1), 2, figsize=(11, 4 * max(len(items), 1)), squeeze=False)
    for (ax_gain, ax_kept), item in zip(axes, items):
        seeds = list(item["per_seed"])
        xs = range(len(seeds))
        # the gains themselves: a ratio hides whether its denominator (the non-private gain) was small
        ax_gain.bar([x - 0.2 for x in xs], [item["per_seed"][s]["gain_non_private"] for s in seeds], 0.4, color="#8c8c8c", label="no DP")
        ax_gain.bar([x + 0.2 for x in xs], [item["per_seed"][s]["gain_private"] for s in seeds], 0.4, color="#0072b2", label=f"ε={item['epsilon']:g}")
        ax_gain.axhline(0, color="k", linewidth=0.8)
        ax_gain.set(title=f"{item['profile']} / {item['strategy']}: personalization gain", ylabel="perplexity points saved over min(global, local)")
        ax_kept.set_title(f"gain kept at ε={item['epsilon']:g}")
        values = [100 * (item["per_seed"][s]["kept"] if item["per_seed"][s]["kept"] is not None else math.nan) for s in seeds]
        if all(math.isnan(v) for v in values):
            ax_kept.text(0.5, 0.5, "undefined on every seed:\nno positive non-private gain to keep", ha="center", va="center", transform=ax_kept.transAxes)
            ax_kept.set(xticks=[], yticks=[])
        else:
            ax_kept.bar(xs, values, color="#0072b2", label="one seed")
            if item["kept"] is not None:
                ax_kept.axhline(100 * item["kept"], color="k", label=f"pooled {pct(item['kept'])}")
            if item["interval"] is not None:
                ax_kept.axhspan(100 * item["interval"][0], 100 * item["interval"][1], color="k", alpha=0.12, label="95 % bootstrap interval")
            ax_kept.axhline(100 * GOAL_GAIN_KEPT, color="r", linestyle=":", label="goal")
            ax_kept.set(ylabel="% of the non-private gain", xticks=list(xs), xticklabels=[str(s) for s in seeds], xlabel="seed")
            ax_kept.grid(axis="y", alpha=0.3)
            ax_kept.legend(fontsize=7)
        ax_gain.set(xticks=list(xs), xticklabels=[str(s) for s in seeds], xlabel="seed")
        ax_gain.grid(axis="y", alpha=0.3)
        ax_gain.legend(fontsize=7)
    fig.tight_layout()
    path = out / "seeds.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def goals_statement(study: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for item in study["gain_kept"]:
        if item["kept"] is None:
            lines.append(f"- **{item['profile']} / {item['strategy']}: gain kept at ε={item['epsilon']:g} undefined** — the mean non-private gain "
                         f"over {item['seeds']} seeds is {item['gain_non_private']:+.2f} (≤ 0).")
            continue
        verdict = "met" if item["goal_met"] else "missed"
        robust = ("and the whole interval is above the goal" if item["goal_met_at_lower_bound"]
                  else "but the interval reaches below the goal" if item["goal_met"] else "")
        lines.append(
            f"- **{item['profile']} / {item['strategy']}: gain kept at ε={item['epsilon']:g} = {pct(item['kept'])} over {item['seeds']} seeds — goal {verdict}** "
            f"(95 % interval {_interval(item['interval'])}{', ' + robust if robust else ''}; mean gain {item['gain_private']:+.2f} vs "
            f"{item['gain_non_private']:+.2f} perplexity points without DP). In nats (mean ln-perplexity saved) it keeps "
            f"{pct(item['kept_nats'])} ({_interval(item['interval_nats'])})."
        )
    for item in study["win_share"]:
        verdict = "met" if item["goal_met"] else "missed"
        lines.append(
            f"- **{item['profile']} {fmt_eps(item['privacy'])} / {item['strategy']}: personalized beats both baselines for "
            f"{item['wins']}/{item['clients']} clients ({pct(item['win_share'])}) — goal {verdict}** (95 % interval {_interval(item['interval'])})."
        )
    return lines


def seed_report(out: Path, seed: int) -> Path:
    """Where one seed's comparison writes its report (compare_strategies' default for `--out <out>/seed-<N>`)."""
    return out / f"seed-{seed}" / "results.md"


def write_report(study: dict[str, Any], report: Path, out: Path, figure: Path) -> Path:
    rel = lambda p: os.path.relpath(p, report.parent)  # noqa: E731
    settings = study["settings"]
    recorded = as_recorded_now(settings)  # older studies did not record dp_step_size / dp_scope
    lines = [
        "# Personalization results over several seeds",
        "",
        f"_Generated by `simulations/studies/seed_study.py`; every number below comes from [`{rel(out / 'seeds.json')}`]({rel(out / 'seeds.json')}) "
        "and the per-seed results it pools. Rerunning the command regenerates this file._",
        "",
        "## How it was produced",
        "",
        "```bash",
        study["command"],
        "```",
        "",
        f"- seeds: {', '.join(str(s) for s in study['seeds'])}; each seed draws its own synthetic federation, train/held-out split and DP noise; "
        "every other setting is the same (below)",
        f"- wall time: **{study['seed_wall_time_s'] / 60:.1f} min** in all (the per-seed comparisons)"
        + (f"; seeds {', '.join(str(s) for s in study['reused'])} were reused from earlier runs with the same settings "
           "(each one's command is in its report)" if study["reused"] else "")
        + (f"; the no-DP rows of each seed come unchanged from `{study['no_dp_from']}` (`--no-dp-from`; wall time above excludes them)"
           if study.get("no_dp_from") else ""),
        f"- settings: profiles {', '.join(settings['profiles'])}; strategies {', '.join(settings['strategies'])}; privacy "
        f"{', '.join(fmt_eps(epsilon_label(e)) for e in settings['epsilons'])}; {settings['rounds']} rounds × {settings['local_epochs']} local epochs "
        f"+ {settings['finetune_epochs']} fine-tuning epochs; lr {settings['learning_rate']:g}; batch {settings['batch_size']}; rank {settings['lora_rank']}; "
        f"clip {settings['max_grad_norm']:g}; {settings['accountant']} accountant; DP step {recorded['dp_step_size']}; ε covers {DP_SCOPE_COVERS[recorded['dp_scope']]}; "
        f"server step of the DP federations {recorded['dp_server_learning_rate']:g}; {weight_note(settings)}"
        + selection_note(settings),
        f"- methods and definitions: as in [seed {study['seeds'][0]}'s report]({rel(seed_report(out, study['seeds'][0]))}) "
        "(global-only, local-only, personalized = interpolation, gain).",
        f"- **pooled gain kept** = mean over seeds of gain(ε={GAIN_KEPT_EPSILON:g}) / mean over seeds of gain(no DP); the 95 % interval is a "
        f"percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples) over whole seeds. **Pooled win share** = wins over all (seed, client) pairs, "
        "interval by the same bootstrap.",
        "",
        "## Goals",
        "",
        *study["statement"],
        "",
        f"![gain kept per seed]({rel(figure)})",
        "",
        f"## Gain kept at ε={GAIN_KEPT_EPSILON:g}, per seed",
        "",
    ]
    rows = []
    for item in study["gain_kept"]:
        for seed, v in item["per_seed"].items():
            rows.append([item["profile"], item["strategy"], str(seed), f"{v['gain_non_private']:+.2f}", f"{v['gain_private']:+.2f}", pct(v["kept"]),
                         pct(v["kept_nats"])])
        rows.append([item["profile"], item["strategy"], "**pooled**", f"{item['gain_non_private']:+.2f}", f"{item['gain_private']:+.2f}",
                     f"**{pct(item['kept'])}** ({_interval(item['interval'])})", f"{pct(item['kept_nats'])} ({_interval(item['interval_nats'])})"])
    lines += [md_table(["profile", "strategy", "seed", "gain without DP (ppl)", f"gain at ε={GAIN_KEPT_EPSILON:g} (ppl)", "kept", "kept in nats"], rows), ""]
    lines += ["## Win share, per seed and pooled", ""]
    seeds = study["seeds"]
    lines.append(md_table(
        ["profile", "privacy", "strategy", *[f"seed {s}" for s in seeds], "pooled", "95 % interval", "mean gain (ppl)"],
        [[i["profile"], fmt_eps(i["privacy"]), i["strategy"], *[pct(i["per_seed"].get(s)) for s in seeds],
          f"{i['wins']}/{i['clients']} ({pct(i['win_share'])})", _interval(i["interval"]), f"{i['mean_gain']:+.2f}"] for i in study["win_share"]],
    ))
    lines += ["", "Each seed's own report (per-client perplexities, plots): "
              + ", ".join(f"[seed {s}]({rel(seed_report(out, s))})" for s in seeds) + ".", ""]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines))
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulations.studies.seed_study",
        allow_abbrev=False,  # --seed (compare_strategies') must not be taken as an abbreviation of --seeds
        description="Run simulations.studies.compare_strategies once per seed and pool the results with bootstrap intervals. "
        "Every option not listed here is passed to compare_strategies (see its --help). Each seed costs one whole "
        "comparison (about 73 min with compare_strategies' defaults on 2 cores; about 6 min for "
        "--profiles hospital --epsilons none,8 --strategies fedavg).",
    )
    p.add_argument("--seeds", default="0-5", help="seeds: a range (0-5), a list (0,1,2) or both")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="study folder: seeds.json, seeds.png and seed-<N>/ per seed")
    p.add_argument("--report", default=None, help=f"Markdown report (default {DEFAULT_REPORT} with the default --out, else <out>/results-seeds.md)")
    p.add_argument("--runs-dir", default="", help="where the federations' run folders go (default runs/seeds-<timestamp>)")
    p.add_argument("--no-dp-from", default="", metavar="DIR",
                   help="an earlier study's folder: each seed takes its no-DP rows from DIR/seed-<N>/results.json instead of rerunning "
                        "them (after a change to DP runs only; see compare_strategies --no-dp-from)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    argv = list(sys.argv[1:] if argv is None else argv)
    args, passthrough = build_parser().parse_known_args(argv)
    for flag in ("--seed", "--quick"):
        if any(a == flag or a.startswith(flag + "=") for a in passthrough):
            raise SystemExit(f"{flag}: not allowed in a seed study (use --seeds; give the quick settings explicitly)")
    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    report = Path(args.report) if args.report else (DEFAULT_REPORT if out == DEFAULT_OUT else out / "results-seeds.md")
    runs_dir = Path(args.runs_dir or Path("runs") / f"seeds-{datetime.now():%Y%m%d-%H%M%S}")
    console = Console(width=None if sys.stdout.isatty() else 160)
    started = time.perf_counter()
    no_dp_from = Path(args.no_dp_from) if args.no_dp_from else None
    if no_dp_from is not None and Path(no_dp_from).resolve() == out.resolve():
        raise SystemExit(f"--no-dp-from {no_dp_from}: is this study's own --out; move the earlier study elsewhere first")
    per_seed, reused = run_seeds(seeds, passthrough, out, runs_dir, console, no_dp_from)
    study = pool(per_seed)
    study.update({
        "command": "python -m simulations.studies.seed_study" + "".join(" " + shlex.quote(a) for a in argv),
        "settings": comparable(per_seed[seeds[0]]["settings"]),
        "reused": reused,
        "no_dp_from": str(no_dp_from) if no_dp_from is not None else None,
        "seed_wall_time_s": sum(per_seed[s]["wall_time_s"] for s in seeds),
        "wall_time_s": time.perf_counter() - started,
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
    })
    study["statement"] = goals_statement(study)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.json").write_text(json.dumps(json_ready(study), indent=1, allow_nan=False))
    figure = plot(study, out)
    write_report(study, report, out, figure)
    for line in study["statement"]:
        console.print(line.replace("**", ""))
    console.print(f"wrote {out / 'seeds.json'}, {figure} and {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
