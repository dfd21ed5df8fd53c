"""Running a comparison: for every profile, privacy level and strategy, the real federation
(`simulations.simulate.run_simulation`, Flower on Ray, one run folder per configuration), then the
device-side work in the worker pool (`workers`), assembled into results.json with its summaries."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fedpriv.config import RunConfig
from fedpriv.device_log import round_with_logs
from fedpriv.data import ClientSplit, list_client_files, split_client_file
from simulations.studies.comparison import workers
from simulations.studies.comparison.formatting import config_sort_key, epsilon_label, json_ready
from simulations.studies.comparison.goals import GAIN_KEPT_EPSILON, GOAL_GAIN_KEPT, GOAL_WIN_SHARE, client_rows, gain_kept, summarize
from simulations.studies.comparison.plots import plot_all
from simulations.studies.comparison.report import goals_statement, print_table, write_report
from simulations.studies.comparison.reuse import machine_info, model_info, reused_no_dp_entry, same_local_only_training
from simulations.studies.comparison.settings import Settings


def load_clients(data_dir: Path, settings: Settings) -> list[ClientSplit]:
    """Every client's train / held-out split, exactly as its device splits it (`split_client_file`)."""
    return [split_client_file(path, settings.eval_fraction, settings.seed) for path in list_client_files(data_dir)]


def held_out_sizes(config: RunConfig, clients: list[ClientSplit]) -> list[dict[str, int]]:
    """Per client: the tokens `evaluate` scores on its held-out split and the UTF-8 bytes they cover,
    so every held-out perplexity of the comparison converts to bits per byte, which (unlike
    perplexity) compares across tokenizers (`goals.bits_per_byte_of`)."""
    from client.dp_training import encode, evaluated_text_bytes, target_token_count
    from fedpriv.modeling import load_tokenizer

    tokenizer = load_tokenizer(config.model)
    return [{"held_out_tokens": target_token_count(encode(tokenizer, c.held_out, config.max_seq_len)),
             "held_out_bytes": evaluated_text_bytes(tokenizer, c.held_out, config.max_seq_len)} for c in clients]


def prepare_data(profile: str, settings: Settings, runs_dir: Path) -> Path:
    """The profile's data folder: `--data`, or a synthetic federation drawn from the seed under `runs_dir`."""
    if settings.data_dir:
        return Path(settings.data_dir)
    from simulations.synthetic import generate_federation, write_federation

    data_dir = runs_dir / profile / "data"
    federation = generate_federation(profile, settings.num_clients[profile], settings.records_per_client[profile], settings.seed)
    write_federation(data_dir, federation)
    return data_dir


def upload_bytes_per_round(metrics: dict[str, Any]) -> dict[str, Any]:
    """From metrics.json: bytes uploaded by each client per round, and by all clients per round."""
    per_round = [r.get("upload_bytes", {}) for r in metrics["rounds"]]
    totals = [sum(int(v) for v in r.values()) for r in per_round]
    per_client = [int(v) for r in per_round for v in r.values()]
    return {
        "per_round_total": totals,
        "mean_total_per_round": statistics.fmean(totals) if totals else 0.0,
        "mean_per_client_per_round": statistics.fmean(per_client) if per_client else 0.0,
        "adapter_bytes": int(metrics.get("adapter", {}).get("bytes", 0)),
    }


def run_profile(profile: str, settings: Settings, runs_dir: Path, pool, console, log) -> dict[str, Any]:
    """Every (ε, strategy) of one profile. Returns the profile's section of results.json."""
    from simulations.simulate import run_simulation

    data_dir = prepare_data(profile, settings, runs_dir)
    clients = load_clients(data_dir, settings)
    probe = settings.run_config(profile, None, settings.strategies[0], str(data_dir), "")
    base = list(pool.map(workers.task_base, [probe] * len(clients), clients))
    sizes = held_out_sizes(probe, clients)
    section: dict[str, Any] = {
        "data_dir": str(data_dir),
        "clients": {
            c.client_id: {"train_records": len(c.train), "held_out_records": len(c.held_out), "base_perplexity": b, **size}
            for c, b, size in zip(clients, base, sizes)
        },
        "epsilons": {},
    }
    trained_without_dp = None  # (config, from-scratch outcomes) of this run's no-DP local-only
    for epsilon in settings.epsilons:
        label = epsilon_label(epsilon)
        if epsilon is None and settings.no_dp_from:
            section["epsilons"][label] = reused_no_dp_entry(Path(settings.no_dp_from), profile, settings, section["clients"])
            log(f"{profile} no DP: taken from {settings.no_dp_from}")
            continue
        entry: dict[str, Any] = {"epsilon": epsilon, "local_only": {}, "runs": {}}
        section["epsilons"][label] = entry
        # --- local-only: no federation, same epochs, same σ and budget
        config = settings.run_config(profile, epsilon, settings.strategies[0], str(data_dir), "")
        if trained_without_dp is not None and same_local_only_training(trained_without_dp[0], config):
            # dp-scope uploads: local-only never leaves the device, so it is the no-DP model just trained
            entry["local_only"] = copy.deepcopy(section["epsilons"]["none"]["local_only"])
            entry["local_only_wall_time_s"] = 0.0
            entry["local_only_from"] = "none"
            from_scratch = trained_without_dp[1]
            log(f"{profile} ε={label}: local-only is the no-DP row's (ε covers the uploads only)")
        else:
            started = time.perf_counter()
            from_scratch = []  # per client: its early-stopped local-only model (None under record-level DP)
            for client, (result, outcome) in zip(clients, pool.map(workers.task_local_only, [config] * len(clients), clients)):
                entry["local_only"][client.client_id] = result
                from_scratch.append(outcome)
            entry["local_only_wall_time_s"] = time.perf_counter() - started
            log(f"{profile} ε={label}: local-only done in {entry['local_only_wall_time_s']:.0f}s")
            if epsilon is None:
                trained_without_dp = (config, from_scratch)
        # --- the federation, per strategy, then global-only and personalized on every device
        for strategy in settings.strategies:
            out = runs_dir / profile / f"eps-{label}" / strategy
            config = settings.run_config(profile, epsilon, strategy, str(data_dir), str(out))
            started = time.perf_counter()
            run_dir = run_simulation(dataclasses.replace(config), show_progress=False)
            federation_time = time.perf_counter() - started
            metrics = json.loads((run_dir / "metrics.json").read_text())
            last = metrics["rounds"][-1]
            # Under DP the held-out metrics stay in the devices' logs; the simulation's device folders hold them.
            final_round = round_with_logs(last["round"], {c["client_id"]: c for c in last["clients"]},
                                          Path(config.state_dir or run_dir / "devices"))
            record_level = metrics["privacy"]["record_level"]
            spent = [record_level.get(c.client_id, {}).get("epsilon") if config.record_dp else None for c in clients]
            started = time.perf_counter()
            results = pool.map(workers.task_personalize, [config] * len(clients), [strategy] * len(clients), clients,
                               [str(run_dir)] * len(clients), spent, [settings.global_weight] * len(clients), from_scratch)
            per_client: dict[str, Any] = {}
            for client, result in zip(clients, results):
                # The federation's own last evaluation saw what the device held after the last
                # round: the global adapter (fedavg/ffa) or global A + own B (fedsa).
                seen = result["federated_with_private_part"] if strategy == "fedsa" else result["global_only"]
                federated = final_round.get(client.client_id, {}).get("eval_perplexity")
                result["federation_eval_perplexity"] = federated
                result["federation_eval_rel_diff"] = abs(seen - federated) / federated if federated else None
                per_client[client.client_id] = result
            diffs = [v["federation_eval_rel_diff"] for v in per_client.values() if v["federation_eval_rel_diff"] is not None]
            entry["runs"][strategy] = {
                "run_dir": str(run_dir),
                "federation_wall_time_s": federation_time,
                "personalization_wall_time_s": time.perf_counter() - started,
                "upload_bytes": upload_bytes_per_round(metrics),
                "record_level_epsilon_max": max((v["epsilon"] for v in record_level.values()), default=None),
                "max_rel_diff_vs_federation_eval": max(diffs) if diffs else None,
                "federation_train_loss_last_round": statistics.fmean(c["train_loss"] for c in final_round.values() if c.get("train_loss") is not None)
                if any(c.get("train_loss") is not None for c in final_round.values()) else None,
                "clients": per_client,
            }
            if diffs and max(diffs) > 1e-3:
                console.print(f"[yellow]warning[/]: {profile} ε={label} {strategy}: in-process evaluation differs from the federation's by {max(diffs):.2%}")
            log(
                f"{profile} ε={label} {strategy}: federation {federation_time:.0f}s, personalization "
                f"{entry['runs'][strategy]['personalization_wall_time_s']:.0f}s"
            )
    return section


def finalize(results: dict[str, Any]) -> dict[str, Any]:
    """Add the computed summaries (goals, bytes) to the raw per-client results."""
    summary = summarize(client_rows(results))
    results["summary_by_key"] = summary
    results["summary"] = [{"profile": p, "privacy": l, "strategy": s, **v}
                          for (p, l, s), v in sorted(summary.items(), key=lambda item: config_sort_key(item[0]))]
    results["gain_kept"] = [{"profile": p, "strategy": s, **v} for (p, s), v in gain_kept(summary).items()]
    upload: dict[str, dict[str, Any]] = {}
    for profile, section in results["profiles"].items():
        for entry in section["epsilons"].values():
            for strategy, run in entry["runs"].items():
                upload.setdefault(profile, {}).setdefault(strategy, run["upload_bytes"])
    results["upload_bytes"] = upload
    results["goals"] = {
        "win_share": {"goal": GOAL_WIN_SHARE, "met_everywhere": {st: all(v["win_goal_met"] for (_, _, s), v in summary.items() if s == st) for st in results["settings"]["strategies"]}},
        "gain_kept": {"goal": GOAL_GAIN_KEPT, "epsilon": GAIN_KEPT_EPSILON, "met": {f"{i['profile']}/{i['strategy']}": i["goal_met"] for i in results["gain_kept"]}},
        "statement": goals_statement(results),
    }
    return results


def run(settings: Settings, command: str) -> dict[str, Any]:
    """The whole comparison: every profile's runs, then results.json, the plots and the report
    (`settings.out`, `settings.report`). Returns the finalized results."""
    from rich.console import Console

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    console = Console(width=None if sys.stdout.isatty() else 160)
    t0 = time.perf_counter()
    started = datetime.now().astimezone()

    def log(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - t0:7.0f}s[/] {message}")

    runs_dir = Path(settings.runs_dir)
    if runs_dir.exists() and any(runs_dir.iterdir()):
        raise SystemExit(f"--runs-dir {runs_dir} is not empty; choose another")
    runs_dir.mkdir(parents=True, exist_ok=True)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": command,
        "settings": dataclasses.asdict(settings),
        "machine": machine_info(),
        "model": model_info(settings.model),
        "started": started.isoformat(timespec="seconds"),
        "profiles": {},
    }
    with workers.make_pool(settings.model, settings.workers) as pool:
        for profile in settings.profile_labels():
            results["profiles"][profile] = run_profile(profile, settings, runs_dir, pool, console, log)
    finished = datetime.now().astimezone()
    results["finished"] = finished.isoformat(timespec="seconds")
    results["wall_time_s"] = time.perf_counter() - t0
    federation = sum(r["federation_wall_time_s"] for s in results["profiles"].values() for e in s["epsilons"].values() for r in e["runs"].values())
    results["timing"] = {"federation_s": federation, "in_process_s": results["wall_time_s"] - federation}
    finalize(results)
    print_table(results, console)
    plots = plot_all(results, out)
    (out / "results.json").write_text(json.dumps(json_ready(results), indent=1, allow_nan=False))
    report = write_report(results, Path(settings.report), out, plots)
    for line in results["goals"]["statement"]:
        console.print(line.replace("**", ""))
    console.print(f"wrote {out / 'results.json'}, {len(plots)} plots and {report} in {results['wall_time_s'] / 60:.1f} min")
    return results
