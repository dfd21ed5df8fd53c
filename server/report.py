"""`report.md` and its plot: held-out perplexity and epsilon per round, epsilon next to every result."""

from __future__ import annotations

import statistics
from pathlib import Path

from fedpriv.config import DP_SCOPE_COVERS, DP_STEP_RULES
from server.run_record import RunRecord


def _series(record: RunRecord, key: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for server_round in sorted(record.rounds):
        for client_id, entry in record.rounds[server_round].items():
            if entry.get(key) is not None:
                series.setdefault(client_id, []).append((server_round, float(entry[key])))
    return series


def _baseline(record: RunRecord) -> dict[str, float]:
    """Held-out perplexity of the initial (untrained) adapter, from round 1's pre-training evaluation."""
    first = record.rounds.get(1, {})
    return {cid: float(e["start_perplexity"]) for cid, e in first.items() if e.get("start_perplexity") is not None}


def plot(record: RunRecord, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    perplexity = _series(record, "eval_perplexity")
    baseline = _baseline(record)
    epsilon = _series(record, "epsilon")
    fig, (ax_ppl, ax_eps) = plt.subplots(1, 2, figsize=(11, 4.2))
    for client_id, points in sorted(perplexity.items()):
        if client_id in baseline:
            points = [(0, baseline[client_id])] + points
        ax_ppl.plot(*zip(*points), marker="o", linewidth=1, markersize=3, label=client_id)
    ax_ppl.set(title="Held-out perplexity of the global adapter", xlabel="round (0 = initial adapter)", ylabel="perplexity")
    if epsilon or record.client_level:
        for client_id, points in sorted(epsilon.items()):
            ax_eps.plot(*zip(*points), marker="o", linewidth=1, markersize=3, label=client_id)
        if record.client_level:
            rounds = sorted(record.client_level)
            ax_eps.plot(rounds, [record.client_level[r]["epsilon"] for r in rounds], "k--", marker="s", label="client-level (DP-FedAvg)")
            ax_eps.legend(fontsize=7)
        ax_eps.set(title=f"ε spent, cumulative (δ={record.config.delta:g})", xlabel="round", ylabel="ε")
    else:
        ax_eps.text(0.5, 0.5, "DP disabled: no ε", ha="center", va="center", transform=ax_eps.transAxes)
        ax_eps.set(title="Record-level ε", xticks=[], yticks=[])
    if len(perplexity) <= 12:
        ax_ppl.legend(fontsize=7)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_ppl, ax_eps):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(record: RunRecord) -> Path:
    out = record.out_dir
    png = plot(record, out / "perplexity_epsilon.png")
    config = record.config
    last_round = max(record.rounds) if record.rounds else 0
    baseline = _baseline(record)
    lines = [
        "# fedpriv run report",
        "",
        f"Profile `{config.profile}`{' (data from ' + config.data_dir + ')' if config.data_dir else ''}, "
        f"{len({c for r in record.rounds.values() for c in r})} clients, {config.rounds} rounds, model `{config.model}`, "
        f"LoRA r={config.lora_rank} on `{config.lora_targets}`, seed {config.seed}.",
        "",
    ]
    server_step = f"; server learning rate η={config.server_learning_rate:g} (global += η·mean update)" if config.server_learning_rate != 1.0 else ""
    lines.append(f"Aggregation strategy `{config.strategy}`{server_step}; DP mode `{config.dp_mode}`.")
    lines.append("")
    if config.record_dp:
        sigma = "calibrated to target ε=" + f"{config.target_epsilon:g}" if config.target_epsilon > 0 else f"σ={config.noise_multiplier:g}"
        step = DP_STEP_RULES[config.dp_step_size]
        lines.append(f"Record-level DP-SGD (Opacus, Poisson sampling): {sigma}, clip C={config.max_grad_norm:g}, δ={config.delta:g}, accountant `{config.accountant}` over all rounds; "
                     f"AdamW step {step} (`dp-step-size {config.dp_step_size}`); ε covers {DP_SCOPE_COVERS[config.dp_scope]} (`dp-scope {config.dp_scope}`).")
    if record.client_level:
        cl = record.client_level[max(record.client_level)]
        lines.append(
            f"Client-level DP-FedAvg: ε={cl['epsilon']:.3f} at δ={cl['delta']:g} after {cl['rounds']} rounds "
            f"(σ={cl['noise_multiplier']:.3f}, clip S={config.client_clipping_norm:g}, sampling {cl['sampling']}, q={cl['sample_rate']:.3f})."
        )
    if config.dp_mode == "none":
        lines.append("**DP disabled (`--dp none`): these results carry no formal privacy guarantee.**")
    lines += ["", f"![perplexity and epsilon per round]({png.name})", "", f"## Final round ({last_round})", ""]
    lines.append("| client | initial ppl | final ppl | ε | δ | σ | q | DP-SGD steps | step size |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    final = record.rounds.get(last_round, {})
    for client_id in sorted(final):
        entry = final[client_id]
        privacy = record.record_level.get(client_id, {})
        def fmt(value, spec=".2f"):
            return "–" if value is None else format(value, spec)
        lines.append(
            f"| {client_id} | {fmt(baseline.get(client_id))} | {fmt(entry.get('eval_perplexity'))} | "
            f"{fmt(privacy.get('epsilon'), '.3f')} | {fmt(privacy.get('delta'), 'g')} | {fmt(privacy.get('noise_multiplier'), '.3f')} | "
            f"{fmt(privacy.get('sample_rate'), '.4f')} | {privacy.get('steps', '–')} | {fmt(entry.get('learning_rate'), '.3g')} |"
        )
    finals = [e["eval_perplexity"] for e in final.values() if e.get("eval_perplexity") is not None]
    if finals and baseline:
        lines += ["", f"Mean held-out perplexity: {statistics.mean(baseline.values()):.2f} (initial) → {statistics.mean(finals):.2f} (after round {last_round})."]
    if record.rejections:
        lines += ["", "## Rejected updates (excluded from the aggregate)", ""]
        lines += [f"- round {r}: {reason}" for r in sorted(record.rejections) for reason in record.rejections[r]]
    if record.failures:
        lines += ["", "## Failed replies", ""]
        lines += [f"- round {r}: {reason}" for r in sorted(record.failures) for reason in record.failures[r]]
    lines += ["", "Files: `metrics.json` (every round, every client), `adapters/round-NNN/` and `adapters/final/` (peft format).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
