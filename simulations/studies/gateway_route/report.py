"""The study's Markdown report and plot, from its results.json."""

from __future__ import annotations

from pathlib import Path


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f} %)" if whole else f"{part}/0"


def _cell(text: str | None, width: int = 70) -> str:
    if text is None:
        return "—"
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def markdown(results: dict, plot_name: str | None) -> str:
    s = results["summary"]
    b = results["baselines"]
    local = s["answered_locally"]
    lines = [
        "# The gateway's `auto` route on SmolLM2-135M" if results["model"] == "smollm2-135m" else f"# The gateway's `auto` route on {results['model']}",
        "",
        f"`--route auto` on {s['prompts']} labelled prompts, with `{results['model']}` as the local model and "
        f"`fedpriv gateway serve --model {results['model']}` as the offline stand-in for the cloud "
        f"(started and stopped by the study); threshold `--min-confidence {s['min_confidence']}`.",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        f"Wall time {results['wall_seconds'] / 60:.1f} min on {results['machine'].get('processor')} "
        f"({results['machine'].get('cpus')} cores, shared; timings inflated), of which stand-in start-up "
        f"{results['standin_start_seconds']:.0f} s; per prompt, the local answer took {results['seconds']['local_mean']:.1f} s "
        f"and the cloud route {results['seconds']['cloud_mean']:.1f} s on average.",
        "",
        "## Result",
        "",
        "| | |",
        "|---|---|",
        f"| answered locally by `auto` | {_pct(local, s['prompts'])} |",
        f"| of those, correct (labelled keyword in the answer) | {_pct(s['local_correct'], local)} |",
        f"| of those, the stand-in correct | {_pct(s['standin_correct_on_local'], local)} |",
        f"| keyword agreement (both correct) | {_pct(s['keyword_agreement'], local)} |",
        f"| same correctness (both right or both wrong) | {_pct(s['same_correctness'], local)} |",
        f"| exact agreement (equal after normalizing) | {_pct(s['exact_agreement'], local)} |",
        f"| sent to the stand-in / refused by the gateway | {s['sent']} / {s['refused']} |",
        f"| `auto` correct over all prompts | {_pct(s['auto_correct'], s['prompts'])} |",
        f"| local model alone correct | {_pct(b['local_only_correct'], b['prompts'])} |",
        f"| stand-in alone (cloud route) correct | {_pct(b['standin_only_correct'], b['prompts'])} (refused {b['standin_refused']}) |",
        "",
        "Definitions (`simulations/studies/gateway_route/scoring.py`): an answer is *correct* when it contains one of the "
        "prompt's labelled keywords as whole words after normalizing (NFKC, lower case, punctuation removed); *keyword "
        "agreement* = both the local and the stand-in answer are correct; *exact agreement* = the two answers are equal "
        "after normalizing. The stand-in's answer is what the gateway's cloud route returns: the prompt sanitized, sent, "
        "and the placeholders in the answer restored.",
        "",
        "## By category",
        "",
        "| category | prompts | local | local correct | keyword agreement | stand-in correct (all) | local correct (all) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in results["by_category"].items():
        rows = [r for r in results["prompts"] if r["category"] == name]
        lines.append(
            f"| {name} | {c['prompts']} | {c['answered_locally']} | {c['local_correct']} | {c['keyword_agreement']} | "
            f"{sum(r['cloud_correct'] for r in rows)} | {sum(r['local_correct'] for r in rows)} |"
        )
    lines += [
        "",
        "*factual*: short questions a small model should know; *hard*: arithmetic, reasoning or rarer facts; *personal*: "
        "questions about personal details given in the prompt (names, phone, MRN, e-mail, address), which the "
        "sanitizer replaces or generalizes before anything is sent.",
        "",
        "## Other thresholds (the same answers)",
        "",
        f"How well the confidence separates the local model's right answers from its wrong ones, over all {s['prompts']} "
        f"prompts: AUROC {results['confidence_auroc']} (0.5 = chance, 1 = some threshold separates them perfectly).",
        "",
        "| min confidence | answered locally | local correct | keyword agreement | `auto` correct |",
        "|---|---|---|---|---|",
    ]
    for t in results["sweep"]:
        lines.append(
            f"| {t['min_confidence']:.2f} | {_pct(t['answered_locally'], t['prompts'])} | {t['local_correct']}/{t['answered_locally']} | "
            f"{t['keyword_agreement']}/{t['answered_locally']} | {_pct(t['auto_correct'], t['prompts'])} |"
        )
    if plot_name:
        lines += ["", f"![confidence against correctness]({plot_name})"]
    lines += [
        "",
        "## Every prompt",
        "",
        "| id | confidence | `auto` | local answer | stand-in answer | local ✓ | stand-in ✓ |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["prompts"]:
        lines.append(
            f"| {r['id']} | {r['confidence']:.2f} | {r['auto_route']} | {_cell(r['local_answer'])} | {_cell(r['cloud_answer'])} | "
            f"{'✓' if r['local_correct'] else '✗'} | {'✓' if r['cloud_correct'] else '✗'} |"
        )
    lines += ["", "## Reading it", ""] + [f"- {note}" for note in results.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    """Confidence of every local answer, by category, marked by correctness, with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = list(results["by_category"])
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for y, name in enumerate(categories):
        rows = [r for r in results["prompts"] if r["category"] == name]
        for correct, marker, colour, label in ((True, "o", "tab:green", "local answer correct"), (False, "x", "tab:red", "local answer wrong")):
            xs = [r["confidence"] for r in rows if r["local_correct"] is correct]
            ax.scatter(xs, [y] * len(xs), marker=marker, color=colour, label=label if y == 0 else None)
    threshold = results["summary"]["min_confidence"]
    ax.axvline(threshold, color="grey", linestyle="--", label=f"--min-confidence {threshold}")
    ax.set_yticks(range(len(categories)), categories)
    ax.set_xlim(0, 1)
    ax.set_xlabel("local confidence (geometric-mean token probability of the greedy answer)")
    ax.set_ylim(-0.5, len(categories) - 0.5 + 0.8)  # room for the legend above the top row
    ax.legend(loc="upper left", fontsize="small", frameon=False, ncol=3)
    ax.set_title(f"auto on {results['model']}: answered locally at or right of the line", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
