"""`report.md` and its plot: held-out perplexity and epsilon per round, epsilon next to every result.

Client ids and failure reasons come from the devices, so every one of them is escaped before it
is written: `markdown_text` for report.md (no line breaks, no markup), `plot_label` for matplotlib
(no mathtext, which a `$` would start and a malformed formula would crash).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import statistics
from pathlib import Path

from fedpriv.config import DP_SCOPE_COVERS, DP_STEP_RULES
from fedpriv.device_log import device_metrics, fill_from_logs
from server.run_record import RunRecord

logger = logging.getLogger(__name__)
# Characters that start inline markup (links, emphasis, code, HTML, tables, strikethrough, math).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|~$#!&])")


def visible(text: object) -> str:
    """The text with every non-printable character (newlines included) shown as an escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def markdown_text(text: object) -> str:
    """Text that renders as itself inside a markdown line or table cell."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", visible(text))


def markdown_code(text: object) -> str:
    """An inline code span of the text (backslash escapes do not work inside one)."""
    return "`" + visible(text).replace("`", "'") + "`"


def plot_label(text: object) -> str:
    """A matplotlib label shown as written: `$` escaped (no mathtext) and a leading `_` kept
    (matplotlib leaves labels that start with one out of the legend)."""
    label = visible(text).replace("$", r"\$")
    return " " + label if label.startswith("_") else label


def _series(record: RunRecord, key: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for server_round in sorted(record.rounds):
        for client_id, entry in record.rounds[server_round].items():
            if entry.get(key) is not None:
                series.setdefault(client_id, []).append((server_round, float(entry[key])))
    return series


def _baseline(record: RunRecord) -> dict[str, float]:
    """Held-out perplexity of the initial (untrained) adapter: every device's evaluation before round 1,
    else (runs recorded before that evaluation existed) round 1's pre-training evaluation."""
    first = record.rounds.get(1, {})
    baseline = {cid: float(e["start_perplexity"]) for cid, e in first.items() if e.get("start_perplexity") is not None}
    baseline.update({cid: float(e["eval_perplexity"]) for cid, e in record.initial_evaluation.items() if e.get("eval_perplexity") is not None})
    return baseline


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
        ax_ppl.plot(*zip(*points), marker="o", linewidth=1, markersize=3, label=plot_label(client_id))
    ax_ppl.set(title="Held-out perplexity of the global adapter", xlabel="round (0 = initial adapter)", ylabel="perplexity")
    if epsilon or record.client_level:
        for client_id, points in sorted(epsilon.items()):
            ax_eps.plot(*zip(*points), marker="o", linewidth=1, markersize=3, label=plot_label(client_id))
        if record.client_level:
            rounds = sorted(record.client_level)
            ax_eps.plot(rounds, [float(record.client_level[r]["epsilon"]) for r in rounds], "k--", marker="s", label="client-level (DP-FedAvg)")
            ax_eps.legend(fontsize=7)
        ax_eps.set(title=f"ε spent, cumulative (δ={record.config.delta:g})", xlabel="round", ylabel="ε")
    else:
        ax_eps.text(0.5, 0.5, "DP disabled: no ε", ha="center", va="center", transform=ax_eps.transAxes)
        ax_eps.set(title="Record-level ε", xticks=[], yticks=[])
    if not perplexity:  # a deployment under DP: the held-out metrics stayed on the devices
        ax_ppl.text(0.5, 0.5, "held-out metrics kept on the devices (DP)", ha="center", va="center", transform=ax_ppl.transAxes)
    elif len(perplexity) <= 12:
        ax_ppl.legend(fontsize=7)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_ppl, ax_eps):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def secure_aggregation_line(record: RunRecord) -> str:
    """What secure aggregation did over the run, in one sentence."""
    rounds = [record.secure[r] for r in sorted(record.secure)]
    done = [r for r in rounds if not r.get("aborted")]
    text = ("Secure aggregation (SecAgg+): the server saw only the sum of each round's updates, never one device's "
            f"({len(done)} of {len(rounds)} rounds aggregated securely")
    if done:
        bound = max(r.get("update_error_bound", 0.0) for r in done)
        recovered = sum(r.get("dropouts_recovered", 0) for r in done)
        text += (f", {recovered} dropouts after key sharing recovered; coordinates clipped to "
                 f"±{done[0]['quantization']['clip_range']:g}, quantization error of a round's step at most {bound:.2g}")
    aborted = len(rounds) - len(done)
    if aborted:
        text += f"; {aborted} aborted, see Participation"
    return text + ")."


def with_device_logs(record: RunRecord, state_dir: Path | None) -> tuple[RunRecord, bool]:
    """The record completed with the metrics the devices kept in their own logs (a simulation's
    device folders under `state_dir`); a deployment's server has none and reports what it received."""
    if state_dir is None:
        return record, False
    rounds, initial, filled = fill_from_logs(record.rounds, record.initial_evaluation, device_metrics(state_dir))
    return (dataclasses.replace(record, rounds=rounds, initial_evaluation=initial) if filled else record), filled


def write_report(record: RunRecord, state_dir: Path | None = None) -> Path:
    """report.md and its plot; with `state_dir`, the devices' own metrics (kept out of their replies
    under DP) are read from their logs there."""
    record, from_devices = with_device_logs(record, state_dir)
    out = record.out_dir
    try:
        png: Path | None = plot(record, out / "perplexity_epsilon.png")
        plot_failure = ""
    except Exception as err:  # noqa: BLE001 - a figure is not worth losing the report over
        logger.warning("report: the plot failed (%s); writing report.md without it", err)
        png, plot_failure = None, f"{type(err).__name__}: {err}"
    config = record.config
    last_round = max(record.rounds) if record.rounds else 0
    baseline = _baseline(record)
    lines = [
        "# fedpriv run report",
        "",
        f"Profile {markdown_code(config.profile)}{' (data from ' + markdown_code(config.data_dir) + ')' if config.data_dir else ''}, "
        f"{len({c for r in record.rounds.values() for c in r})} clients, {config.rounds} rounds, model {markdown_code(config.model)}, "
        f"LoRA r={config.lora_rank} on {markdown_code(config.lora_targets)}, seed {config.seed}.",
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
    if config.secure_aggregation_on:
        lines.append(secure_aggregation_line(record))
    participation = record.extra.get("participation")
    if participation:
        lines.append(f"Participation: {participation['clients_per_round']} clients sampled per round; a round updates the global "
                     f"adapter with at least {participation['min_train_nodes']} valid replies (`min-train-nodes`) and evaluates "
                     f"with at least {participation['min_evaluate_nodes']} (`min-evaluate-nodes`); the server waits "
                     f"{participation['round_timeout']:g} s for each step's replies (`round-timeout`).")
    kept_on_devices = config.dp_mode != "none" and not any(e.get("eval_perplexity") is not None
                                                           for clients in record.rounds.values() for e in clients.values())
    if kept_on_devices and not from_devices:
        lines.append("Under DP the devices keep their losses and held-out metrics in their own logs (`device_log.jsonl` in "
                     "each device's state-dir); the server records only what a mechanism covers.")
    if from_devices:
        lines.append("Losses and held-out metrics come from the devices' own logs (`device_log.jsonl` in each device folder): "
                     "under DP they are not sent, and `metrics.json` holds only what the server received.")
    if record.resumes:
        lines.append("Resumed from its checkpoint at " + ", ".join(f"round {r['from_round']}" for r in record.resumes) + ".")
    figure = f"![perplexity and epsilon per round]({png.name})" if png is not None else f"(no plot: {markdown_text(plot_failure)})"
    lines += ["", figure, "", f"## Final round ({last_round})", ""]
    # bits per byte next to perplexity: perplexity depends on the tokenizer, bits per byte does not
    lines.append("| client | initial ppl | final ppl | final bits/byte | ε | δ | σ | q | DP-SGD steps | step size |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    final = record.rounds.get(last_round, {})
    for client_id in sorted(final):
        entry = final[client_id]
        privacy = record.record_level.get(client_id, {})
        def fmt(value, spec=".2f"):
            if value is None:
                return "–"
            value = float(value)
            return "∞" if math.isinf(value) else format(value, spec)
        lines.append(
            f"| {markdown_text(client_id)} | {fmt(baseline.get(client_id))} | {fmt(entry.get('eval_perplexity'))} | "
            f"{fmt(entry.get('eval_bits_per_byte'), '.3f')} | "
            f"{fmt(privacy.get('epsilon'), '.3f')} | {fmt(privacy.get('delta'), 'g')} | {fmt(privacy.get('noise_multiplier'), '.3f')} | "
            f"{fmt(privacy.get('sample_rate'), '.4f')} | {privacy.get('steps', '–')} | {fmt(entry.get('learning_rate'), '.3g')} |"
        )
    finals = [float(e["eval_perplexity"]) for e in final.values() if e.get("eval_perplexity") is not None]
    if finals and baseline:
        lines += ["", f"Mean held-out perplexity: {statistics.mean(baseline.values()):.2f} (initial) → {statistics.mean(finals):.2f} (after round {last_round})."]
    skipped = [(r, phase, info["note"]) for r in sorted(record.replies) for phase, info in record.replies[r].items() if info.get("note")]
    dropouts = [(r, phase, d) for r in sorted(record.dropouts) for phase, nodes in record.dropouts[r].items() for d in nodes]
    if skipped or dropouts:
        lines += ["", "## Participation", ""]
        lines += [f"- round {r} ({phase}): {markdown_text(note)}" for r, phase, note in skipped]
        lines += [f"- round {r} ({phase}): no reply from node {d['node_id']}"
                  + (f" (client {markdown_text(d['client_id'])})" if d.get("client_id") else "") for r, phase, d in dropouts]
    if record.rejections:
        lines += ["", "## Rejected replies (excluded from the aggregate and the record)", ""]
        lines += [f"- round {r}: {markdown_text(reason)}" for r in sorted(record.rejections) for reason in record.rejections[r]]
    if record.failures:
        lines += ["", "## Failed replies", ""]
        lines += [f"- round {r}: {markdown_text(reason)}" for r in sorted(record.failures) for reason in record.failures[r]]
    lines += ["", "Files: `metrics.json` (every round, every client), `adapters/round-NNN/` and `adapters/final/` (peft format), "
              "`server_state/` (the checkpoint `--resume` continues from).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
