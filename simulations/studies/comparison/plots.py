"""The comparison's PNG plots: per-client perplexity per method, gain and win share against ε, and
bytes uploaded per round per strategy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from simulations.studies.comparison.formatting import epsilon_label, fmt_eps
from simulations.studies.comparison.goals import GOAL_WIN_SHARE


def plot_all(results: dict[str, Any], out: Path) -> list[Path]:
    """Write the plots of a finalized results dict into `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    strategies = results["settings"]["strategies"]
    colors = {"global-only": "#8c8c8c", "local-only": "#e69f00"}
    palette = ["#0072b2", "#009e73", "#cc79a7", "#d55e00"]
    for i, s in enumerate(strategies):
        colors[f"personalized ({s})"] = palette[i % len(palette)]
    # 1. per-client perplexity bars per method, one panel per ε
    for profile, section in results["profiles"].items():
        labels = list(section["epsilons"])
        clients = list(section["clients"])
        fig, axes = plt.subplots(1, len(labels), figsize=(max(4.5 * len(labels), 6), 4.2 + 0.08 * len(clients)), sharey=True, squeeze=False)
        for ax, label in zip(axes[0], labels):
            entry = section["epsilons"][label]
            series = {
                "global-only": [min(entry["runs"][s]["clients"][c]["global_only"] for s in entry["runs"]) for c in clients],
                "local-only": [entry["local_only"][c]["perplexity"] for c in clients],
            }
            for s in entry["runs"]:
                series[f"personalized ({s})"] = [entry["runs"][s]["clients"][c]["personalized"] for c in clients]
            width = 0.8 / len(series)
            for j, (name, values) in enumerate(series.items()):
                ax.bar([k + (j - (len(series) - 1) / 2) * width for k in range(len(clients))], values, width, label=name, color=colors.get(name))
            ax.set_xticks(range(len(clients)), [c.replace(f"{profile}-", "") for c in clients], rotation=60, ha="right", fontsize=7)
            ax.set_title(f"{profile}: {fmt_eps(label)}")
            ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3, which="both")
        axes[0][0].set_ylabel("held-out perplexity (log scale)")
        axes[0][-1].legend(fontsize=7)
        fig.tight_layout()
        path = out / f"perplexity_{profile}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    # 2. gain and win share vs ε
    fig, (ax_gain, ax_win) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [epsilon_label(e) for e in results["settings"]["epsilons"]]
    xs = list(range(len(labels)))
    for profile in results["profiles"]:
        for strategy in strategies:
            keyed = results["summary_by_key"]
            gains = [keyed.get((profile, l, strategy), {}).get("gain", math.nan) for l in labels]
            wins = [100 * keyed.get((profile, l, strategy), {}).get("win_share", math.nan) for l in labels]
            style = "-" if profile == list(results["profiles"])[0] else "--"
            ax_gain.plot(xs, gains, style, marker="o", label=f"{profile} / {strategy}", color=colors[f"personalized ({strategy})"])
            ax_win.plot(xs, wins, style, marker="o", label=f"{profile} / {strategy}", color=colors[f"personalized ({strategy})"])
    ax_gain.axhline(0, color="k", linewidth=0.8)
    ax_gain.set(title="Personalization gain over min(global-only, local-only)", xlabel="record-level ε per client", ylabel="mean perplexity points saved")
    ax_win.axhline(100 * GOAL_WIN_SHARE, color="r", linewidth=0.8, linestyle=":", label="goal")
    ax_win.set(title="Clients where personalized beats both baselines", xlabel="record-level ε per client", ylabel="% of clients", ylim=(-5, 105))
    for ax in (ax_gain, ax_win):
        ax.set_xticks(xs, [("no DP" if l == "none" else l) for l in labels])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "gain_vs_epsilon.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    # 3. bytes uploaded per round per strategy
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    profiles = list(results["upload_bytes"])
    width = 0.8 / max(len(strategies), 1)
    for j, strategy in enumerate(strategies):
        values = [results["upload_bytes"][p].get(strategy, {}).get("mean_per_client_per_round", 0) / 1024 for p in profiles]
        bars = ax.bar([k + (j - (len(strategies) - 1) / 2) * width for k in range(len(profiles))], values, width, label=strategy, color=colors[f"personalized ({strategy})"])
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(profiles)), profiles)
    ax.set(title="Upload per client per round", ylabel="KiB")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "upload_bytes.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths
