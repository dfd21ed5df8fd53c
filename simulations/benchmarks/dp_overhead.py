"""Benchmark: DP-SGD step time and peak memory over non-private, and upload size over base-model size.

    python -m simulations.benchmarks.dp_overhead [--model default] [--steps 30] [--batch-size 16]
    python -m simulations.benchmarks.dp_overhead --model smollm2-135m --steps 5 --warmup 1 --max-seq-len 32

Each mode (non-private, Opacus hooks, Opacus ghost) runs in its own process, so its peak memory is
its own: the resident set sampled during the timed steps, and how far that is above the resident
set once the model is loaded (what a training step needs on top of the model). Prints tables; the
numbers recorded in docs/benchmarks.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from client.dp_training import IGNORE, encode, next_token_pairs, per_record_loss
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, build_lora_model, load_tokenizer, state_num_bytes


def _timed_steps(model, config: RunConfig, dataset, mode: str, steps: int, warmup: int) -> list[float]:
    """Seconds per optimizer step of LoRA `model` with a fixed batch size (Poisson sampling off, to time equal work)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    criterion = None
    if mode != "none":
        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant="prv")
        private = engine.make_private(
            module=model, optimizer=optimizer, criterion=torch.nn.CrossEntropyLoss(ignore_index=IGNORE), data_loader=loader,
            noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=mode,
        )
        if mode == "ghost":
            model, optimizer, criterion, loader = private
        else:
            model, optimizer, loader = private
    times: list[float] = []
    while len(times) < steps + warmup:
        for input_ids, attention_mask, labels in loader:
            start = time.perf_counter()
            optimizer.zero_grad()
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            if criterion is not None:
                shift_logits, shift_labels = next_token_pairs(logits, labels)
                loss = criterion(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), shape=shift_logits.shape[:2])
            else:
                loss = per_record_loss(logits, labels).mean()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
            if len(times) >= steps + warmup:
                break
    return times[warmup:]


def _resident_bytes() -> int:
    """This process' resident set now (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakResident:
    """Samples the resident set every 5 ms on a thread; `peak` is the largest seen."""

    def __init__(self) -> None:
        self.peak = _resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _resident_bytes())

    def __enter__(self) -> _PeakResident:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _measure_mode(args: argparse.Namespace, mode: str) -> dict[str, float | list[float]]:
    """One mode in this process: step times, resident set with the model loaded, peak during the steps."""
    torch.set_num_threads(args.threads)
    from simulations.synthetic import generate_federation

    config = RunConfig(model=args.model, batch_size=args.batch_size, max_seq_len=args.max_seq_len).validated()
    texts = next(iter(generate_federation("hospital", num_clients=1, records_per_client=400, seed=0).values()))
    dataset = encode(load_tokenizer(config.model), texts, config.max_seq_len)
    model = build_lora_model(config)
    loaded = _resident_bytes()
    with _PeakResident() as peak:
        times = _timed_steps(model, config, dataset, mode, args.steps, args.warmup)
    return {"times": times, "loaded_bytes": loaded, "peak_bytes": peak.peak}


def _run_mode_in_child(args: argparse.Namespace, mode: str) -> dict:
    command = [sys.executable, "-m", "simulations.benchmarks.dp_overhead", "--child-mode", mode, "--model", args.model,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
               "--max-seq-len", str(args.max_seq_len), "--threads", str(args.threads)]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"mode {mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default', an installed model (e.g. smollm2-135m) or a model folder")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3, help="steps run before timing starts")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a simulated client gets one core)")
    parser.add_argument("--child-mode", choices=("none", "hooks", "ghost"), help=argparse.SUPPRESS)  # one mode, JSON on stdout
    args = parser.parse_args()
    if args.child_mode:
        print(json.dumps(_measure_mode(args, args.child_mode)))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 130))  # the tables stay readable in a log file
    results = {}
    for mode in ("none", "hooks", "ghost"):
        console.print(f"measuring {mode} ({args.warmup} + {args.steps} steps) ...")
        results[mode] = _run_mode_in_child(args, mode)
    baseline = statistics.median(results["none"]["times"])
    base_step_memory = results["none"]["peak_bytes"] - results["none"]["loaded_bytes"]
    table = Table(title=f"DP-SGD step time and memory, model={args.model}, batch={args.batch_size}, seq={args.max_seq_len}, threads={args.threads}")
    for column in ("mode", "median step (ms)", "× non-private", "goal ≤ 1.15×", "peak RSS (MB)", "above loaded model (MB)", "× non-private "):
        table.add_column(column)
    for mode, r in results.items():
        median = statistics.median(r["times"])
        ratio = median / baseline
        step_memory = r["peak_bytes"] - r["loaded_bytes"]
        table.add_row(mode if mode != "none" else "non-private", f"{1000 * median:.1f}", f"{ratio:.2f}",
                      "" if mode == "none" else ("met" if ratio <= 1.15 else "missed"),
                      f"{r['peak_bytes'] / 2**20:.0f}", f"{step_memory / 2**20:.0f}", f"{step_memory / max(base_step_memory, 1):.2f}")
    console.print(table)

    model = build_lora_model(RunConfig(model=args.model).validated())
    full = adapter_state(model)
    base_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" not in n)
    sizes = Table(title="Bytes uploaded per client per round")
    for column in ("what is sent", "bytes", "% of base model", "goal ≤ 1%"):
        sizes.add_column(column)
    b_only = {k: v for k, v in full.items() if "lora_B" in k}
    for label, state in (("LoRA A+B (fedavg)", full), ("LoRA B only (ffa)", b_only)):
        share = 100 * state_num_bytes(state) / base_bytes
        sizes.add_row(label, f"{state_num_bytes(state):,}", f"{share:.2f}%", "met" if share <= 1 else "missed")
    sizes.add_row("base model (never sent)", f"{base_bytes:,}", "100%", "")
    console.print(sizes)


if __name__ == "__main__":
    main()
