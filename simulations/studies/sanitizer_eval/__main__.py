"""Leak rate and utility of the sanitizer against Presidio's defaults on synthetic prompts.

    python -m simulations.studies.sanitizer_eval [--n 500] [--seed 0] [--templates standard|fresh] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulations.studies.sanitizer_eval",
        description="Evaluate the sanitizer on a seeded, span-labelled synthetic prompt set.",
    )
    parser.add_argument("--n", type=int, default=500, help="number of prompts (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--config", metavar="FILE", help="gateway config (TOML)")
    parser.add_argument("--templates", choices=("standard", "fresh"), default="standard",
                        help="template set: standard, or fresh (written after the detector was frozen)")
    parser.add_argument("--json", metavar="PATH", help="also save the report as JSON")
    parser.add_argument("--no-baseline", action="store_true", help="skip the Presidio-default comparison")
    parser.add_argument("--examples", type=int, default=0, metavar="K", help="print up to K leaked examples (sanitized text only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 1:
        print("sanitizer_eval: error: --n must be at least 1", file=sys.stderr)
        return 2
    from rich.console import Console

    from simulations.studies.sanitizer_eval.scoring import render_table, run_eval, save_json

    console = Console()
    with console.status(f"generating {args.n} prompts and sanitizing them ..."):
        report = run_eval(n=args.n, seed=args.seed, config_path=args.config, baseline=not args.no_baseline,
                          keep_examples=args.examples, template_set=args.templates)
    render_table(report, console)
    for ex in report.get("examples", []):
        console.print(f"{ex['id']} leaked {ex['type']}:", style="dim", highlight=False, markup=False)
        console.print("   " + ex["sanitized"], highlight=False, markup=False)
    if args.json:
        save_json(report, args.json)
        console.print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
