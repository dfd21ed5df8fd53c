"""Benchmark: the wall time of whole federated rounds, local training included, secure over plaintext.

    python -m simulations.benchmarks.secagg_rounds [--clients 10 50] [--rounds 2] [--out DIR]

Each run is `fedpriv simulate`'s own code path (``simulations.simulate.run_simulation``, Flower on
Ray) on the phone profile's default, client-level DP, with every client in every round (so both
modes train the same clients), tiny data (8 records per client, 16-token sequences) and the shipped
default model. Per round it reads what the run recorded in metrics.json: ``seconds.train`` (from
the first train instruction to the new global adapter: training, and under secure aggregation the
three extra exchanges) and ``seconds.evaluate``; and the bytes each client sent (plaintext: its
reply's tensors; secure: its records over the four stages). Round 1 includes starting the Ray
workers and loading the model, so the table reports the later rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from fedpriv.config import RunConfig
from simulations.simulate import run_simulation


def one_run(clients: int, secure: bool, rounds: int, out: Path) -> dict:
    config = RunConfig(profile="phone", num_clients=clients, clients_per_round=clients, rounds=rounds, dp="client",
                       records_per_client=8, max_seq_len=16, batch_size=8, secure_aggregation=secure, out=str(out))
    run_simulation(config, show_progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    later = metrics["rounds"][1:] or metrics["rounds"]
    train = [r["seconds"]["train"] for r in later]
    whole = [r["seconds"]["train"] + r["seconds"]["evaluate"] for r in later]
    if secure:
        sent = [statistics.mean(r["secure_aggregation"]["bytes_sent"].values()) for r in later]
        assert all(not r["secure_aggregation"]["aborted"] for r in metrics["rounds"])
    else:
        sent = [statistics.mean(r["upload_bytes"].values()) for r in later]
    return {"train_s": statistics.median(train), "round_s": statistics.median(whole), "sent_per_client": statistics.median(sent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="secagg-rounds-"))
    print("| clients | train phase (s), plaintext → secure | × | whole round (s) | × | bytes sent per client | × |")
    print("|---|---|---|---|---|---|---|")
    for n in args.clients:
        plain = one_run(n, False, args.rounds, root / f"plain-{n}")
        secure = one_run(n, True, args.rounds, root / f"secure-{n}")
        print(f"| {n} | {plain['train_s']:.1f} → {secure['train_s']:.1f} | {secure['train_s'] / plain['train_s']:.2f} "
              f"| {plain['round_s']:.1f} → {secure['round_s']:.1f} | {secure['round_s'] / plain['round_s']:.2f} "
              f"| {plain['sent_per_client']:,.0f} → {secure['sent_per_client']:,.0f} "
              f"| {secure['sent_per_client'] / plain['sent_per_client']:.2f} |", flush=True)
    print(f"runs in {root}")


if __name__ == "__main__":
    main()
