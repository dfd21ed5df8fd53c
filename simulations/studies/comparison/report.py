"""The comparison's outputs for readers: the console table, the goal sentences and the Markdown
report (with the notes that say how the numbers were produced). The report's links are relative to
its own folder; its analysis section (between ANALYSIS_START and ANALYSIS_END) is kept when the
report is regenerated."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fedpriv.config import DP_SCOPE_COVERS, DP_STEP_RULES
from simulations.studies.comparison.formatting import config_sort_key, fmt_eps, fmt_optional, md_table, pct, spread
from simulations.studies.comparison.goals import GAIN_KEPT_EPSILON, GOAL_GAIN_KEPT, GOAL_WIN_SHARE, bits_per_byte_summary
from simulations.studies.comparison.reuse import as_recorded_now

ANALYSIS_START = "<!-- analysis: kept when the report is regenerated -->"
ANALYSIS_END = "<!-- /analysis -->"


def _by_configuration(summary: dict[tuple[str, str, str], dict[str, Any]]) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
    return sorted(summary.items(), key=lambda item: config_sort_key(item[0]))


def _max_epsilon_spent(run: dict[str, Any], label: str) -> float | None:
    """The largest record-level ε any device of `run` had spent after its fine-tuning (None without DP)."""
    return max((c["epsilon_after_finetune"] or 0.0) for c in run["clients"].values()) if label != "none" else None


def print_table(results: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title="Held-out perplexity (mean over clients): global-only vs local-only vs personalized")
    for column in ("profile", "privacy", "strategy", "global-only", "local-only", "personalized", "wins (both)", "gain (ppl)", "max ε", "upload B/client/round"):
        table.add_column(column, justify="left" if column in ("profile", "privacy", "strategy") else "right")
    for (profile, label, strategy), s in _by_configuration(results["summary_by_key"]):
        run = results["profiles"][profile]["epsilons"][label]["runs"][strategy]
        eps = _max_epsilon_spent(run, label)
        mark = "[green]" if s["win_goal_met"] else "[red]"
        table.add_row(
            profile, fmt_eps(label), strategy,
            f"{s['mean_global_only']:.2f}", f"{s['mean_local_only']:.2f}", f"{s['mean_personalized']:.2f}",
            f"{mark}{s['wins']}/{s['clients']} ({pct(s['win_share'])})", f"{s['gain']:+.2f}",
            "—" if eps is None else f"{eps:.3f}", f"{run['upload_bytes']['mean_per_client_per_round']:,.0f}",
        )
    console.print(table)
    kept = Table(title=f"Share of the non-private personalization gain kept at ε={GAIN_KEPT_EPSILON:g} (goal ≥ {GOAL_GAIN_KEPT:.0%})")
    for column in ("profile", "strategy", "gain no DP", f"gain ε={GAIN_KEPT_EPSILON:g}", "kept"):
        kept.add_column(column)
    for item in results["gain_kept"]:
        mark = "[green]" if item["goal_met"] else "[red]"
        kept.add_row(item["profile"], item["strategy"], f"{item['gain_non_private']:+.2f}", f"{item['gain_private']:+.2f}", f"{mark}{pct(item['kept'])}")
    console.print(kept)


def goals_statement(results: dict[str, Any]) -> list[str]:
    """Plain sentences: which goal is met where, which is missed."""
    lines: list[str] = []
    summary = results["summary_by_key"]
    for strategy in results["settings"]["strategies"]:
        met = [k for k, s in summary.items() if k[2] == strategy and s["win_goal_met"]]
        missed = [k for k, s in summary.items() if k[2] == strategy and not s["win_goal_met"]]
        def names(keys):
            return ", ".join(f"{p} {fmt_eps(l)} ({pct(summary[(p, l, strategy)]['win_share'])})" for p, l, _ in sorted(keys, key=config_sort_key))
        if not missed:
            lines.append(f"- **{strategy}: win-share goal met in every configuration** (≥ {GOAL_WIN_SHARE:.0%} of clients: {names(met)}).")
        else:
            lines.append(
                f"- **{strategy}: win-share goal missed in {len(missed)} of {len(met) + len(missed)} configurations**: {names(missed)}"
                + (f"; met in {names(met)}." if met else ".")
            )
    for item in results["gain_kept"]:
        if item["kept"] is None:
            lines.append(
                f"- **{item['profile']} / {item['strategy']}: gain kept at ε={GAIN_KEPT_EPSILON:g} undefined** — the non-private gain is "
                f"{item['gain_non_private']:+.2f} (≤ 0), so there is no non-private gain to keep (goal counted as missed)."
            )
        else:
            verdict = "met" if item["goal_met"] else "missed"
            lines.append(
                f"- **{item['profile']} / {item['strategy']}: gain kept at ε={GAIN_KEPT_EPSILON:g} = {pct(item['kept'])} — goal {verdict}** "
                f"({item['gain_private']:+.2f} vs {item['gain_non_private']:+.2f} perplexity points without DP)."
            )
    return lines


# ---- notes on how the numbers were produced (from results.json settings, old runs included) ------


def total_epochs(s: dict[str, Any]) -> int:
    """A device's local epochs over the run (`client.personalize.total_local_epochs`, from results.json settings)."""
    return s["rounds"] * s["local_epochs"] + s["finetune_epochs"]


def selection_note(s: dict[str, Any]) -> str:
    """How the runs without DP chose their epochs (results.json of older runs has no such setting)."""
    from client.selection import PATIENCE

    fraction = s.get("validation_fraction", 0.0)
    uploads_only = s.get("dp_scope") == "uploads" and any(e is not None for e in s["epsilons"])
    if not fraction or (None not in s["epsilons"] and not uploads_only):
        return ""
    when = "without DP and under `dp-scope uploads`" if uploads_only else "without DP"
    return (f"; **{when}** both local-only and the fine-tuning train up to {total_epochs(s)} "
            f"epochs on the train split minus a {fraction:.0%} validation slice and keep the epoch best on that slice "
            f"(early stopping, patience {PATIENCE}; `client.selection`); the held-out split is never used for a choice")


def weight_note(s: dict[str, Any]) -> str:
    """How λ (the federated model's weight in the mixture) was set."""
    from client.interpolation import DEFAULT_GLOBAL_WEIGHT
    from client.selection import WEIGHT_GRID

    weight = s.get("global_weight", DEFAULT_GLOBAL_WEIGHT)
    fixed = "fixed in advance (not tuned on any client's data, so it is post-processing and spends no ε)"
    if weight is not None:
        return f"λ = {weight:g} {fixed}"
    if s.get("validation_fraction"):
        grid = ", ".join(f"{w:g}" for w in WEIGHT_GRID)
        if s.get("dp_scope") == "uploads":
            return (f"λ is the value of {{{grid}}} with the lowest loss on the device's validation slice, with or without DP "
                    "(under `dp-scope uploads` the personalization never leaves the device and ε does not cover it)")
        return (f"under DP λ = {DEFAULT_GLOBAL_WEIGHT:g} {fixed}; without DP λ is the value of {{{grid}}} "
                "with the lowest loss on the device's validation slice")
    return f"λ = {DEFAULT_GLOBAL_WEIGHT:g} {fixed}"


def dp_step_note(s: dict[str, Any]) -> str:
    """The DP step-size rule as run (results made before the setting existed used the fixed rate)."""
    s = as_recorded_now(s)
    if s["dp_step_size"] == "fixed":
        return f"every DP-SGD step uses learning rate {s['learning_rate']:g}"
    rule = DP_STEP_RULES[s["dp_step_size"]].replace("learning rate", f"learning rate {s['learning_rate']:g}", 1)
    scope = s["dp_scope"]
    which = "(federation, fine-tuning, local-only)" if scope == "all" else "(the federation's)"
    eta = s["dp_server_learning_rate"]
    server_step = (f"; the DP rows' federations step the global adapter by {eta:g} × the mean update "
                   f"(`dp-server-learning-rate {eta:g}`; the no-DP rows by 1)") if eta != 1.0 else ""
    return (f"every DP-SGD step {which} uses {rule}, "
            "since Adam moves each coordinate about one learning rate per noisy step whatever the signal "
            f"(`dp-step-size {s['dp_step_size']}`, `client.dp_training.dp_learning_rate`); "
            f"record-level ε covers {DP_SCOPE_COVERS[scope]} (`dp-scope {scope}`){server_step}")


def reused_note(results: dict[str, Any]) -> str:
    sources = sorted({e["reused_from"] for p in results["profiles"].values() for e in p["epsilons"].values() if e.get("reused_from")})
    return f"\n- no-DP rows taken unchanged from {', '.join(f'`{x}`' for x in sources)} (`--no-dp-from`; nothing they depend on changed)" if sources else ""


# ---- the Markdown report ------------------------------------------------------------------------


def existing_analysis(report: Path) -> str:
    """The analysis section of an earlier version of `report` ("" if there is none)."""
    if not report.is_file():
        return ""
    text = report.read_text()
    if ANALYSIS_START in text and ANALYSIS_END in text:
        return text.split(ANALYSIS_START, 1)[1].split(ANALYSIS_END, 1)[0].strip()
    return ""


def write_report(results: dict[str, Any], report: Path, out: Path, plots: list[Path]) -> Path:
    s = results["settings"]
    rel = lambda p: os.path.relpath(p, report.parent)  # noqa: E731
    summary = results["summary_by_key"]
    parts: list[str] = [
        "# Personalization results: global-only vs local-only vs personalized",
        "",
        "_Generated by `simulations/studies/compare_strategies.py`; every number below comes from the run recorded in "
        f"[`{rel(out / 'results.json')}`]({rel(out / 'results.json')}). Rerunning the command regenerates this file "
        "(the analysis section at the end is kept)._",
        "",
        "## How it was produced",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        f"- machine: {results['machine'].get('processor')}, {results['machine'].get('cpus')} CPU cores, "
        f"{results['machine'].get('memory_gib', '?')} GiB RAM, no GPU; {results['machine'].get('platform')}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in results['machine'].get('versions', {}).items())}",
        f"- wall time: **{results['wall_time_s'] / 60:.1f} min** ({results['started']} → {results['finished']}); "
        f"federations {results['timing']['federation_s'] / 60:.1f} min, in-process local-only / personalization "
        f"{results['timing']['in_process_s'] / 60:.1f} min",
        f"- model `{s['model']}` (model.safetensors sha256 `{results.get('model', {}).get('sha256', '?')[:12]}…`); LoRA rank {s['lora_rank']} (alpha {s['lora_alpha']:g}) on q_proj, v_proj; "
        f"learning rate {s['learning_rate']:g} (AdamW); batch {s['batch_size']} (Poisson under DP); max {s['max_seq_len']} tokens",
        f"- federation: {s['rounds']} rounds × {s['local_epochs']} local epoch, every client every round; "
        f"then {s['finetune_epochs']} fine-tuning epochs on the device; local-only trains "
        f"{total_epochs(s)} epochs" + selection_note(s),
        "- clients: " + ", ".join(f"{p}: {len(results['profiles'][p]['clients'])} clients × "
                                  f"{next(iter(results['profiles'][p]['clients'].values()))['train_records']} train / "
                                  f"{next(iter(results['profiles'][p]['clients'].values()))['held_out_records']} held-out records"
                                  for p in results["profiles"]),
        f"- privacy: record-level DP-SGD (Opacus, clip {s['max_grad_norm']:g}, {s['accountant']} accountant, δ={s['delta']:g}); "
        "σ calibrated per client so that all rounds **plus** the fine-tuning spend exactly the target ε; "
        "local-only uses the same σ and number of steps, so the same ε; "
        + dp_step_note(s) + reused_note(results),
        "",
        "## Definitions",
        "",
        "- **global-only**: the federation's final global adapter on the client's held-out split. The baseline for a client is the "
        "best global adapter (lowest perplexity for that client) among the strategies of that configuration. "
        "fedsa's global adapter is lora_A only; with lora_B at its zero init it is exactly the base model.",
        "- **local-only**: the client alone, same number of epochs (without DP: the same cap and selection), same σ and ε, its own train split only.",
        "- **fine-tuned**: the federated result + what stays on the device (fedsa: its own lora_B) + "
        f"{s['finetune_epochs']} epochs of local fine-tuning continuing the device's privacy ledger (without DP: the selected number, see above; "
        "ffa fine-tunes B with the shared A frozen; fedsa fine-tunes A and B).",
        f"- **personalized**: model interpolation (Mansour et al. 2020): the device predicts each next token with "
        f"λ·p_federated + (1 − λ)·p_fine-tuned, {weight_note(s)}. Costs two adapter forward passes per token on the device.",
        f"- **wins**: personalized perplexity < global-only **and** < local-only for that client (goal: ≥ {GOAL_WIN_SHARE:.0%} of clients).",
        "- **fine-tuned wins**: the same test for the fine-tuned model alone (the ablation without interpolation).",
        "- **gain**: mean over clients of min(global-only, local-only) − personalized, in perplexity points "
        f"(> 0 = personalization helps). **Gain kept at ε={GAIN_KEPT_EPSILON:g}** = gain(ε={GAIN_KEPT_EPSILON:g}) / gain(no DP) "
        f"(goal ≥ {GOAL_GAIN_KEPT:.0%}). The gain in nats (mean ln-perplexity saved) is given for reference.",
        "",
        "## Goals",
        "",
        *goals_statement(results),
        "",
        "## Summary per configuration",
        "",
    ]
    rows = []
    for (profile, label, strategy), v in _by_configuration(summary):
        run = results["profiles"][profile]["epsilons"][label]["runs"][strategy]
        eps = _max_epsilon_spent(run, label)
        rows.append([
            profile, fmt_eps(label), strategy, f"{v['mean_global_only']:.2f}", f"{v['mean_local_only']:.2f}", f"{v['mean_personalized']:.2f}",
            f"{v['wins']}/{v['clients']} ({pct(v['win_share'])})", pct(v["beats_global"]), pct(v["beats_local"]),
            f"{v['gain']:+.2f}", f"{v['gain_nats']:+.3f}",
            f"{v['mean_finetuned']:.2f}" if "mean_finetuned" in v else "—",
            f"{v['finetuned_wins']}/{v['clients']}" if "finetuned_wins" in v else "—",
            "—" if eps is None else f"{eps:.3f}",
        ])
    parts += [
        md_table(["profile", "privacy", "strategy", "global-only ppl", "local-only ppl", "personalized ppl", "wins (both)",
                  "beats global", "beats local", "gain (ppl)", "gain (nats)", "fine-tuned ppl", "fine-tuned wins", "max ε spent"], rows),
        "",
        "Perplexities are means over clients; `max ε spent` is the largest record-level ε any device had spent after "
        "its fine-tuning (federation + fine-tuning; local-only spends the same).",
        "",
        *_gain_kept_section(results),
        *_bits_per_byte_section(results),
        *_selection_section(results),
        "### Bytes uploaded per round",
        "",
        md_table(["profile", "strategy", "per client per round", "all clients per round", "full adapter (for reference)"],
                 [[p, st, f"{v['mean_per_client_per_round']:,.0f} B", f"{v['mean_total_per_round']:,.0f} B", f"{v['adapter_bytes']:,} B"]
                  for p, per in results["upload_bytes"].items() for st, v in per.items()]),
        "",
        "From `metrics.json` `rounds[*].upload_bytes` (the ArrayRecord bytes of each accepted train reply).",
        "",
        "## Plots",
        "",
    ]
    for path in plots:
        parts += [f"![{path.stem}]({rel(path)})", ""]
    parts += ["## Per-client held-out perplexity", ""]
    for profile, section in results["profiles"].items():
        for label, entry in section["epsilons"].items():
            parts += [f"### {profile}, {fmt_eps(label)}", "", _per_client_table(section, entry), ""]
    analysis = existing_analysis(report)
    parts += [ANALYSIS_START, analysis or "## Analysis\n\n_(not written yet)_", ANALYSIS_END, ""]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(parts))
    return report


def _per_client_table(section: dict[str, Any], entry: dict[str, Any]) -> str:
    strategies = list(entry["runs"])
    header = ["client", "base", "global-only (best)", "local-only", *[f"{st}: fed.+private" for st in strategies],
              *[f"{st}: fine-tuned" for st in strategies], *[f"{st}: personalized" for st in strategies], "wins"]
    body = []
    for cid, info in section["clients"].items():
        g = min(entry["runs"][st]["clients"][cid]["global_only"] for st in strategies)
        loc = entry["local_only"][cid]["perplexity"]
        pers = [entry["runs"][st]["clients"][cid]["personalized"] for st in strategies]
        body.append([
            cid, f"{info['base_perplexity']:.1f}", f"{g:.2f}", f"{loc:.2f}",
            *[f"{entry['runs'][st]['clients'][cid]['federated_with_private_part']:.2f}" for st in strategies],
            *[fmt_optional(entry["runs"][st]["clients"][cid].get("finetuned")) for st in strategies],
            *[f"{p:.2f}" for p in pers],
            ", ".join(st for st, p in zip(strategies, pers) if p < g and p < loc) or "—",
        ])
    return md_table(header, body)


def _gain_kept_section(results: dict[str, Any]) -> list[str]:
    if not results["gain_kept"]:  # the run lacks no DP or ε = 8
        return []
    return [f"### Gain kept at ε={GAIN_KEPT_EPSILON:g}", "",
            md_table(["profile", "strategy", "gain without DP", f"gain at ε={GAIN_KEPT_EPSILON:g}", "kept", "goal"],
                     [[i["profile"], i["strategy"], f"{i['gain_non_private']:+.2f}", f"{i['gain_private']:+.2f}", pct(i["kept"]),
                       "met" if i["goal_met"] else "missed"] for i in results["gain_kept"]]), ""]


def _bits_per_byte_section(results: dict[str, Any]) -> list[str]:
    summary = bits_per_byte_summary(results)
    if not summary:  # results made before the held-out byte counts were recorded
        return []
    rows = [[p, fmt_eps(label), st, f"{v['base']:.3f}", f"{v['global_only']:.3f}", f"{v['local_only']:.3f}", f"{v['personalized']:.3f}",
             f"{v['gain']:+.3f}"] for (p, label, st), v in sorted(summary.items(), key=lambda item: config_sort_key(item[0]))]
    return ["### Held-out bits per byte", "",
            "The same held-out losses per UTF-8 byte of the text scored (mean over clients; `client.dp_training.bits_per_byte`): "
            "unlike perplexity, this compares across tokenizers. Gain = the better baseline's minus personalized (> 0 = better).", "",
            md_table(["profile", "privacy", "strategy", "base", "global-only", "local-only", "personalized", "gain (bits/byte)"], rows), ""]


def selection_rows(results: dict[str, Any]) -> list[list[str]]:
    """Per (profile, strategy) without DP: the epochs each method kept on its validation slice, the λ
    chosen there, and on how many devices the private model was the one trained from scratch."""
    rows = []
    for profile, section in results["profiles"].items():
        entry = section["epsilons"].get("none")
        if entry is None:
            continue
        local = [c["epochs"] for c in entry["local_only"].values() if "epochs" in c]
        for strategy, run in entry["runs"].items():
            chosen = [c for c in run["clients"].values() if c.get("selected_on_validation")]
            if not chosen:
                continue
            tuned = [c["finetune_epochs"] for c in chosen]
            weights = [c["global_weight"] for c in chosen]
            scratch = sum(c.get("private_model") == "from_scratch" for c in chosen)
            rows.append([profile, strategy, spread(local), spread(tuned), spread(weights, "{:g}"), f"{scratch}/{len(chosen)}"])
    return rows


def _selection_section(results: dict[str, Any]) -> list[str]:
    rows = selection_rows(results)
    if not rows:
        return []
    return ["### Selection without DP", "",
            "Epochs kept by early stopping on each device's validation slice (cap "
            f"{total_epochs(results['settings'])}) and the λ chosen there, mean over clients (range); "
            "the last column counts the devices whose private model (the mixture's other side) is the adapter "
            "trained from scratch, which had the lower validation loss than the fine-tuned one.", "",
            md_table(["profile", "strategy", "local-only epochs", "fine-tuning epochs", "λ (weight of the federated model)",
                      "private model from scratch"], rows), ""]
