"""python -m simulations.studies.gateway_route: see the package docstring."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUT = "docs/studies/gateway-route"
DEFAULT_REPORT = "docs/studies/gateway-route.md"
SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def build_parser() -> argparse.ArgumentParser:
    from client.gateway.router import DEFAULT_MIN_CONFIDENCE

    parser = argparse.ArgumentParser(prog="python -m simulations.studies.gateway_route", description=__doc__)
    parser.add_argument("--model", default="smollm2-135m", help="local model and stand-in model (default: smollm2-135m)")
    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                        help=f"auto's threshold (default: the gateway's, {DEFAULT_MIN_CONFIDENCE})")
    parser.add_argument("--max-tokens", type=int, default=64,
                        help="longest stand-in answer, in tokens (default 64, the local model's own cap)")
    parser.add_argument("--prompts", type=Path, default=None, help="prompt set (default: the study's prompts.jsonl)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts (a quick check)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"folder for results.json and the plot (default {DEFAULT_OUT})")
    parser.add_argument("--report", default=DEFAULT_REPORT, help=f"Markdown report (default {DEFAULT_REPORT}; '' = none)")
    parser.add_argument("--rescore", action="store_true",
                        help="no model runs: score the answers stored in OUT/results.json again (after a change to the scoring rules)")
    return parser


def figures(rows, min_confidence: float) -> dict:
    """Every figure of the report, from the per-prompt rows."""
    from simulations.studies.gateway_route import scoring

    return {
        "summary": scoring.summarize(rows, min_confidence),
        "by_category": scoring.by_category(rows, min_confidence),
        "baselines": scoring.baselines(rows),
        "confidence_auroc": scoring.confidence_auroc(rows),
        "sweep": [scoring.summarize(rows, t) for t in sorted({*SWEEP, min_confidence})],
    }


def write_outputs(results: dict, out: Path, report_path: str) -> None:
    from simulations.studies.gateway_route import report

    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if report_path:
        plot_path = out / "confidence.png"
        report.plot(results, plot_path)
        Path(report_path).write_text(report.markdown(results, os.path.relpath(plot_path, Path(report_path).parent)), encoding="utf-8")


def rescore(out: Path, report_path: str) -> dict:
    """The stored answers scored again with today's rules (`scoring.py`); the models do not run."""
    from simulations.studies.gateway_route import scoring

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = [scoring.Row(p["id"], p["category"], p["confidence"], p["local_answer"], p["cloud_answer"], p["cloud_route"], tuple(p["keywords"]))
            for p in results["prompts"]]
    for p, row in zip(results["prompts"], rows, strict=True):
        p["local_correct"], p["cloud_correct"] = row.local_correct, row.cloud_correct
        p["exact_agreement"] = scoring.exact_match(row.local_answer, row.cloud_answer)
    results.update(figures(rows, results["summary"]["min_confidence"]))
    note = (f"Scored again from the stored answers (`{results['command']} --rescore`) with the scoring rules of "
            "`scoring.py` as they are now; the models did not run again.")
    if note not in results["notes"]:
        results["notes"].append(note)
    write_outputs(results, out, report_path)
    return results


NOTES = [
    "The stand-in is the same 135 M-parameter model as the local one, so agreement here measures what the "
    "cloud route changes (the sanitized prompt, the gateway's placeholder system message), not what a "
    "large model would add. With a real cloud model the stand-in column would be the large model's answers.",
    "The confidence is the local model's own: exp(mean log p) of the tokens it generated greedily, "
    "up to 64 tokens (`client/gateway/local_model.py`). A fluent but wrong answer can be confident, "
    "and a right answer followed by a long, loose continuation can fall below the threshold.",
    "The labels are keywords: an answer that names the right thing in other words counts as wrong, and "
    "one that mentions the keyword while saying something wrong counts as right. The per-prompt table "
    "shows every answer for checking.",
]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    from rich.console import Console

    from client.gateway.gateway import Gateway, GatewayOptions, default_sanitizer
    from client.gateway.local_model import LocalModel
    from client.gateway.router import Router
    from simulations.studies.comparison.reuse import machine_info
    from simulations.studies.gateway_route import scoring
    from simulations.studies.gateway_route.run import PROMPTS, free_port, load_prompts, route_one, standin_server

    console = Console(stderr=True)
    if args.rescore:
        s = rescore(Path(args.out), args.report)["summary"]
        console.print(f"rescored {Path(args.out) / 'results.json'}: {s['answered_locally']}/{s['prompts']} local, "
                      f"{s['local_correct']} correct, keyword agreement {s['keyword_agreement']}")
        return 0
    prompts = load_prompts(args.prompts or PROMPTS)[: args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    router = Router("auto", min_confidence=args.min_confidence)
    local_max_new_tokens = GatewayOptions().local_max_new_tokens
    local_model = LocalModel(args.model, max_new_tokens=local_max_new_tokens)
    with tempfile.TemporaryDirectory(prefix="gateway-route-") as state, \
            standin_server(args.model, free_port(), Path(state) / "serve.log") as url:
        standin_start = time.monotonic() - started
        console.print(f"stand-in up at {url} after {standin_start:.0f} s; loading the local model ...")
        os.chmod(state, 0o700)
        options = GatewayOptions(state_dir=str(Path(state) / "gw"), route="cloud", cloud_url=url, timeout=600,
                                 max_retries=0, max_tokens=args.max_tokens)
        sanitizer, new_session = default_sanitizer(options.state_dir)
        cloud_gateway = Gateway.from_options(options, sanitizer=sanitizer, new_session=new_session)
        local_model.load()
        outcomes = []
        for i, prompt in enumerate(prompts, 1):
            outcome = route_one(prompt, local_model, router, cloud_gateway)
            outcomes.append(outcome)
            r = outcome.row
            console.print(f"[{i}/{len(prompts)}] {r.id} confidence {r.confidence:.2f} -> {outcome.auto_route}; "
                          f"local {'ok' if r.local_correct else 'wrong'}, stand-in {'ok' if r.cloud_correct else 'wrong'} "
                          f"({outcome.local_seconds:.0f} s + {outcome.cloud_seconds:.0f} s)")
    wall = time.monotonic() - started
    rows = [o.row for o in outcomes]
    results = {
        "model": args.model,
        "command": "python -m simulations.studies.gateway_route" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])),
        "wall_seconds": round(wall, 1),
        "standin_start_seconds": round(standin_start, 1),
        "machine": machine_info(),
        "local_max_new_tokens": local_max_new_tokens,
        "standin_max_tokens": args.max_tokens,
        **figures(rows, args.min_confidence),
        "seconds": {
            "local_mean": round(sum(o.local_seconds for o in outcomes) / len(outcomes), 2),
            "cloud_mean": round(sum(o.cloud_seconds for o in outcomes) / len(outcomes), 2),
        },
        "notes": NOTES,
        "prompts": [
            {
                "id": o.row.id, "category": o.row.category, "text": p.text, "keywords": list(p.keywords),
                "confidence": round(o.local.confidence, 4), "mean_entropy": round(o.local.mean_entropy, 3),
                "local_tokens": o.local.num_tokens, "local_answer": o.local.text, "local_correct": o.row.local_correct,
                "sent": o.cloud.sent, "cloud_route": o.cloud.route, "cloud_reason": o.cloud.reason,
                "cloud_answer": o.cloud.answer, "cloud_correct": o.row.cloud_correct,
                "auto_route": o.auto_route, "auto_answer": o.auto_answer,
                "exact_agreement": scoring.exact_match(o.row.local_answer, o.row.cloud_answer),
                "local_seconds": round(o.local_seconds, 2), "cloud_seconds": round(o.cloud_seconds, 2),
            }
            for p, o in zip(prompts, outcomes, strict=True)
        ],
    }
    write_outputs(results, out, args.report)
    s = results["summary"]
    console.print(
        f"auto at {s['min_confidence']}: {s['answered_locally']}/{s['prompts']} answered locally, {s['local_correct']} of them correct, "
        f"keyword agreement {s['keyword_agreement']}/{s['answered_locally']}, exact {s['exact_agreement']}; "
        f"auto correct {s['auto_correct']}/{s['prompts']}; wall {wall / 60:.1f} min -> {out / 'results.json'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
