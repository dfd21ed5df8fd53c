"""Leak rate and utility of the sanitizer, per entity type and per source.

    python -m simulations.studies.sanitizer_eval [--split dev] [--systems rules,spacy,union,presidio-spacy] [--json PATH]
    python -m simulations.studies.sanitizer_eval --split test --final      # only when a change is finished
    python -m simulations.studies.sanitizer_eval --split generated [--n 500] [--seed 0] [--templates standard|fresh]
    python -m simulations.studies.sanitizer_eval build                     # makes the stored split, once
    python -m simulations.studies.sanitizer_eval calibrate                 # fits the residual-risk model on dev

``dev`` and ``test`` are the stored halves of the multi-source set (``dataset.py``); scoring the
test part needs ``--final`` and is recorded in ``assets/test_scorings.jsonl``. ``generated`` is the
original template generator against Presidio's default recognizers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulations.studies.sanitizer_eval",
        description="Evaluate the sanitizer on span-labelled prompts (stored dev/test split, or freshly generated).",
    )
    parser.add_argument("action", nargs="?", choices=("score", "build", "calibrate"), default="score",
                        help="score (default); build the stored split (once); calibrate the residual-risk model on the dev part")
    parser.add_argument("--split", choices=("dev", "test", "generated"), default="dev",
                        help="dev (default), test (frozen: needs --final) or generated")
    parser.add_argument("--final", action="store_true",
                        help="score the frozen test part (the change is finished; the scoring is recorded)")
    parser.add_argument("--systems", default="rules,spacy,union,presidio-spacy",
                        help="dev/test: comma-separated from rules, spacy, union, presidio-spacy")
    parser.add_argument("--max-residual-risk", type=float, default=None, metavar="R",
                        help="dev/test: risk threshold for the sent/refused split (default: the gateway's)")
    parser.add_argument("--n", type=int, default=500, help="generated: number of prompts (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="generated: generator seed (default 0)")
    parser.add_argument("--config", metavar="FILE", help="gateway config (TOML)")
    parser.add_argument("--templates", choices=("standard", "fresh"), default="standard",
                        help="generated: template set: standard, or fresh (written after the detector was frozen)")
    parser.add_argument("--json", metavar="PATH", help="also save the report as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="dev/test: also write the tables as Markdown")
    parser.add_argument("--no-baseline", action="store_true", help="generated: skip the Presidio-default comparison")
    parser.add_argument("--examples", type=int, default=0, metavar="K", help="print up to K leaked examples (sanitized text only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 1:
        print("sanitizer_eval: error: --n must be at least 1", file=sys.stderr)
        return 2
    from rich.console import Console

    from simulations.studies.sanitizer_eval.dataset import FrozenSplitError, build

    console = Console()
    if args.action == "build":
        try:
            sizes = build()
        except FrozenSplitError as err:
            print(f"sanitizer_eval: error: {err}", file=sys.stderr)
            return 2
        console.print(f"stored the split: {sizes['dev']} development and {sizes['test']} test prompts")
        return 0
    if args.action == "calibrate":
        from simulations.studies.sanitizer_eval.calibrate import main as calibrate

        return calibrate()
    if args.split == "test" and not args.final:
        print("sanitizer_eval: error: the test part is frozen; score it only when a change is finished, with --final",
              file=sys.stderr)
        return 2

    from simulations.studies.sanitizer_eval.scoring import SYSTEMS, render_split, render_table, run_eval, run_split, save_json

    if args.split == "generated":
        with console.status(f"generating {args.n} prompts and sanitizing them ..."):
            report = run_eval(n=args.n, seed=args.seed, config_path=args.config, baseline=not args.no_baseline,
                              keep_examples=args.examples, template_set=args.templates)
        render_table(report, console)
    else:
        systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
        unknown = [s for s in systems if s not in SYSTEMS]
        if unknown or not systems:
            print(f"sanitizer_eval: error: unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}", file=sys.stderr)
            return 2
        with console.status(f"scoring the {args.split} part with {', '.join(systems)} ..."):
            report = run_split(args.split, final=args.final, systems=systems, config_path=args.config,
                               keep_examples=args.examples, risk_threshold=args.max_residual_risk)
        render_split(report, console)
        if args.markdown:
            from simulations.studies.sanitizer_eval.scoring import split_markdown

            with open(args.markdown, "w", encoding="utf-8") as fh:
                fh.write(split_markdown(report))
    for ex in report.get("examples", []):
        console.print(f"{ex['id']} leaked {ex['type']}:", style="dim", highlight=False, markup=False)
        console.print("   " + ex["sanitized"], highlight=False, markup=False)
    if args.json:
        save_json(report, args.json)
        console.print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
