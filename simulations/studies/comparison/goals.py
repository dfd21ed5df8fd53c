"""The comparison's goals, computed on the per-client table: does personalized beat both baselines
(win share, goal ≥ 80 % of clients), by how much (gain), and how much of the non-private gain is
kept under DP (gain kept at ε = 8, goal ≥ 80 %). Pure functions of results.json."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulations.studies.comparison.formatting import epsilon_label

GOAL_WIN_SHARE = 0.8
GOAL_GAIN_KEPT = 0.8
GAIN_KEPT_EPSILON = 8.0


@dataclass(frozen=True)
class ClientRow:
    """One client under one (profile, ε, strategy): held-out perplexities of the three methods."""

    profile: str
    epsilon: float | None
    strategy: str
    client_id: str
    global_only: float  # the client's best global adapter of that (profile, ε)
    local_only: float
    personalized: float  # the interpolation of the federated and the fine-tuned model
    finetuned: float | None = None  # the fine-tuned model alone (ablation; None in old results)


def personalized_wins(row: ClientRow) -> bool:
    return row.personalized < row.global_only and row.personalized < row.local_only


def gain(row: ClientRow) -> float:
    """Perplexity points personalization saves over the better of the two baselines (> 0: better)."""
    return min(row.global_only, row.local_only) - row.personalized


def gain_nats(row: ClientRow) -> float:
    """The same in mean token NLL (nats): ln(min baseline ppl) − ln(personalized ppl)."""
    return math.log(min(row.global_only, row.local_only)) - math.log(row.personalized)


def client_rows(results: dict[str, Any]) -> list[ClientRow]:
    """Flatten results.json's per-client numbers into the table the goals are computed on."""
    rows: list[ClientRow] = []
    for profile, section in results["profiles"].items():
        for entry in section["epsilons"].values():
            runs = entry["runs"]
            for client_id, local in entry["local_only"].items():
                best_global = min(runs[s]["clients"][client_id]["global_only"] for s in runs)
                for strategy, run in runs.items():
                    rows.append(
                        ClientRow(profile, entry["epsilon"], strategy, client_id, best_global, local["perplexity"],
                                  run["clients"][client_id]["personalized"], run["clients"][client_id].get("finetuned"))
                    )
    return rows


def summarize(rows: Sequence[ClientRow]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (profile, ε label, strategy): win share, mean gain, mean perplexities."""
    groups: dict[tuple[str, str, str], list[ClientRow]] = {}
    for row in rows:
        groups.setdefault((row.profile, epsilon_label(row.epsilon), row.strategy), []).append(row)
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, group in groups.items():
        wins = sum(personalized_wins(r) for r in group)
        out[key] = {
            "clients": len(group),
            "wins": wins,
            "win_share": wins / len(group),
            "win_goal_met": wins / len(group) >= GOAL_WIN_SHARE,
            "gain": statistics.fmean(gain(r) for r in group),
            "gain_nats": statistics.fmean(gain_nats(r) for r in group),
            "mean_global_only": statistics.fmean(r.global_only for r in group),
            "mean_local_only": statistics.fmean(r.local_only for r in group),
            "mean_personalized": statistics.fmean(r.personalized for r in group),
            "beats_global": sum(r.personalized < r.global_only for r in group) / len(group),
            "beats_local": sum(r.personalized < r.local_only for r in group) / len(group),
            **_finetuned_summary(group),
        }
    return out


def _finetuned_summary(group: Sequence[ClientRow]) -> dict[str, Any]:
    """The fine-tuned model alone (no interpolation), for the ablation columns."""
    if any(r.finetuned is None for r in group):
        return {}
    finetuned_wins = sum(r.finetuned < r.global_only and r.finetuned < r.local_only for r in group)
    return {"mean_finetuned": statistics.fmean(r.finetuned for r in group), "finetuned_wins": finetuned_wins}


def gain_kept(summary: dict[tuple[str, str, str], dict[str, Any]], epsilon: float = GAIN_KEPT_EPSILON) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (profile, strategy): gain(ε) / gain(no DP). Undefined (None) when the non-private gain
    is not positive (there is nothing to keep) or either configuration is missing."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    pairs = {(p, s) for (p, _, s) in summary}
    for profile, strategy in sorted(pairs):
        private = summary.get((profile, epsilon_label(epsilon), strategy))
        public = summary.get((profile, "none", strategy))
        if private is None or public is None:
            continue
        ratio = private["gain"] / public["gain"] if public["gain"] > 0 else None
        out[(profile, strategy)] = {
            "epsilon": epsilon,
            "gain_private": private["gain"],
            "gain_non_private": public["gain"],
            "kept": ratio,
            "goal_met": ratio is not None and ratio >= GOAL_GAIN_KEPT,
        }
    return out


def bits_per_byte_of(perplexity: float, held_out: dict[str, Any]) -> float:
    """A client's held-out perplexity in bits per byte, from its held-out token and byte counts
    (results.json `profiles.<p>.clients.<id>`): ln(perplexity) is the mean token NLL."""
    from client.dp_training import bits_per_byte

    return bits_per_byte(math.log(perplexity) * held_out["held_out_tokens"], held_out["held_out_bytes"])


def bits_per_byte_summary(results: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, float]]:
    """Per (profile, ε label, strategy): mean over clients of the held-out bits per byte of the base
    model, global-only, local-only and personalized, and the gain in bits per byte (the better
    baseline's minus personalized). {} for a profile whose byte counts were not recorded."""
    groups: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for row in client_rows(results):
        held_out = results["profiles"][row.profile]["clients"][row.client_id]
        if "held_out_bytes" not in held_out:
            continue
        bpb = {name: bits_per_byte_of(ppl, held_out) for name, ppl in (
            ("base", held_out["base_perplexity"]), ("global_only", row.global_only), ("local_only", row.local_only),
            ("personalized", row.personalized))}
        bpb["gain"] = min(bpb["global_only"], bpb["local_only"]) - bpb["personalized"]
        groups.setdefault((row.profile, epsilon_label(row.epsilon), row.strategy), []).append(bpb)
    return {key: {name: statistics.fmean(c[name] for c in group) for name in group[0]} for key, group in groups.items()}
