"""Throughput of the privacy gateway's sanitizer on one CPU core.

    python -m simulations.benchmarks.sanitizer [--n 2000] [--seed 0] [--config FILE] [--json PATH]

Builds the sanitizer once (Presidio AnalyzerEngine + recognizers + gazetteers; not timed in the
per-prompt numbers), pins the process to one core, warms up, then sanitizes ``--n`` synthetic
prompts from the evaluation generator (each in a fresh conversation session, as the router does
per conversation) and prints prompts/s, characters/s and latency percentiles. The default path
uses no torch model; torch is nevertheless limited to one thread in case an import starts it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="prompts to sanitize (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None, help="gateway config (TOML)")
    parser.add_argument("--json", default=None, help="save the numbers as JSON")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a project dependency
        pass

    t0 = time.perf_counter()
    from client.gateway.sanitizer import PromptSanitizer  # imports Presidio (and, through it, transformers)
    from client.gateway.session import ConversationSession

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sanitizer = PromptSanitizer(config_path=args.config)
    build_s = time.perf_counter() - t0
    from simulations.studies.sanitizer_eval.prompts import generate

    prompts = [p.text for p in generate(args.n, args.seed)]
    for text in prompts[:50]:  # warm-up (regex caches, lazy imports)
        sanitizer.sanitize(text, ConversationSession())

    latencies = []
    n_entities = 0
    start = time.perf_counter()
    for text in prompts:
        t = time.perf_counter()
        result = sanitizer.sanitize(text, ConversationSession())
        latencies.append(time.perf_counter() - t)
        n_entities += len(result.entities)
    total = time.perf_counter() - start

    chars = sum(len(t) for t in prompts)
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000  # noqa: E731
    report = {
        "command": "python -m simulations.benchmarks.sanitizer " + " ".join(argv if argv is not None else sys.argv[1:]),
        "prompts": args.n,
        "mean_chars_per_prompt": round(chars / args.n, 1),
        "entities_per_prompt": round(n_entities / args.n, 2),
        "cores": 1,
        "import_seconds": round(import_s, 2),
        "build_seconds": round(build_s, 2),
        "prompts_per_second": round(args.n / total, 1),
        "chars_per_second": round(chars / total),
        "latency_ms_p50": round(q(0.50), 2),
        "latency_ms_p95": round(q(0.95), 2),
        "latency_ms_p99": round(q(0.99), 2),
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000, 2),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    goal = report["prompts_per_second"] >= 300
    print(f"goal >= 300 prompts/s on one core: {'met' if goal else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
