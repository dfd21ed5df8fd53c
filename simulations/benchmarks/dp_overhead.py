"""Benchmark: DP-SGD step time over non-private step time, and upload size over base-model size.

    python -m simulations.benchmarks.dp_overhead [--model default] [--steps 30] [--batch-size 16]

Prints a table; the numbers recorded in docs/benchmarks.md come from this script.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

from client.dp_training import IGNORE, encode, next_token_pairs, per_record_loss
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, build_lora_model, load_tokenizer, state_num_bytes


def _timed_steps(config: RunConfig, dataset, mode: str, steps: int, warmup: int = 3) -> list[float]:
    """Seconds per optimizer step with a fixed batch size (Poisson sampling off, to time equal work)."""
    model = build_lora_model(config)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a simulated client gets one core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from rich.console import Console
    from rich.table import Table

    from simulations.synthetic import generate_federation

    config = RunConfig(model=args.model, batch_size=args.batch_size, max_seq_len=args.max_seq_len).validated()
    texts = next(iter(generate_federation("hospital", num_clients=1, records_per_client=400, seed=0).values()))
    dataset = encode(load_tokenizer(config.model), texts, config.max_seq_len)

    console = Console()
    results = {mode: _timed_steps(config, dataset, mode, args.steps) for mode in ("none", "hooks", "ghost")}
    baseline = statistics.median(results["none"])
    table = Table(title=f"DP-SGD step time, model={args.model}, batch={args.batch_size}, seq={args.max_seq_len}, threads={args.threads}")
    for column in ("mode", "median step (ms)", "× non-private", "goal ≤ 1.15×"):
        table.add_column(column)
    for mode, times in results.items():
        ratio = statistics.median(times) / baseline
        table.add_row(mode if mode != "none" else "non-private", f"{1000 * statistics.median(times):.1f}", f"{ratio:.2f}", "" if mode == "none" else ("met" if ratio <= 1.15 else "missed"))
    console.print(table)

    model = build_lora_model(config)
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
