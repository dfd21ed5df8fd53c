"""``fedpriv sanitize`` and ``fedpriv sanitize-eval``.

``fedpriv sanitize --input IN.jsonl --output OUT.jsonl [--config FILE]`` (``-`` = stdin/stdout)
reads lines ``{"id": ..., "text": ...}`` and writes ``{"id": ..., "sanitized": ..., "entities":
[{"type", "start", "end", "replacement"}], "residual_risk": ...}`` with offsets into the original
text; the original entity text is never written. A bad line (invalid JSON, no "text", empty text,
text over the size limit, a sanitizer failure) is reported on stderr with its line number and
skipped; the other lines are still processed and the exit code is 1 at the end.

Placeholders are consistent across the whole run, or per value of an optional ``"session"`` field
in the input lines. ``--vault FILE --key-file KEY`` keeps the placeholder map, encrypted, so the
answers can be restored later on this device.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack

from fedpriv.errors import DataError, FedprivError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sanitize",
        help="remove identifiers from prompts (JSONL in, JSONL out)",
        description="Detect identifiers, generalize quasi-identifiers and substitute placeholders in "
        'JSONL prompts ({"id": ..., "text": ...} per line).',
    )
    p.add_argument("--input", "-i", required=True, metavar="IN.jsonl", help="input JSONL file, or - for stdin")
    p.add_argument("--output", "-o", required=True, metavar="OUT.jsonl", help="output JSONL file, or - for stdout")
    p.add_argument("--config", metavar="FILE", help="gateway config (TOML); default: the shipped default_patterns.toml")
    p.add_argument("--max-chars", type=int, metavar="N", help="refuse texts longer than N characters (default: config, 20000)")
    p.add_argument("--vault", metavar="FILE", help="save the placeholder map here, encrypted (needs --key-file)")
    p.add_argument("--key-file", metavar="FILE", help="vault key file (created with 0600 permissions if missing)")
    p.set_defaults(func=run_sanitize)

    e = subparsers.add_parser(
        "sanitize-eval",
        help="leak rate / utility of the sanitizer vs Presidio's defaults on synthetic prompts",
        description="Evaluate the sanitizer on a seeded, span-labelled synthetic prompt set.",
    )
    e.add_argument("--n", type=int, default=500, help="number of prompts (default 500)")
    e.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    e.add_argument("--config", metavar="FILE", help="gateway config (TOML)")
    e.add_argument("--templates", choices=("standard", "fresh"), default="standard",
                   help="template set: standard, or fresh (written after the detector was frozen)")
    e.add_argument("--json", metavar="PATH", help="also save the report as JSON")
    e.add_argument("--no-baseline", action="store_true", help="skip the Presidio-default comparison")
    e.add_argument("--examples", type=int, default=0, metavar="K", help="print up to K leaked examples (sanitized text only)")
    e.set_defaults(func=run_eval)


def _error(source: str, lineno: int, message: str) -> None:
    print(f"fedpriv sanitize: {source}:{lineno}: error: {message}", file=sys.stderr)


def run_sanitize(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from client.gateway.config import load_config
    from client.gateway.sanitizer import PromptSanitizer
    from client.gateway.session import ConversationSession, EncryptedVault
    from client.gateway.types import SanitizationError

    if args.max_chars is not None and args.max_chars < 1:
        raise FedprivError("--max-chars must be a positive integer")
    if bool(args.vault) != bool(args.key_file):
        raise FedprivError("--vault and --key-file go together")
    config = load_config(args.config)
    if args.max_chars is not None:
        config = replace(config, max_chars=args.max_chars)
    sanitizer = PromptSanitizer(config)

    vault = EncryptedVault(args.vault, key_file=args.key_file) if args.vault else None
    default_session = vault.open() if vault else ConversationSession()
    sessions: dict[str, ConversationSession] = {}
    source = "<stdin>" if args.input == "-" else args.input

    n_ok = n_bad = 0
    with ExitStack() as stack:
        try:
            fin = sys.stdin if args.input == "-" else stack.enter_context(open(args.input, encoding="utf-8"))
        except OSError as err:
            raise DataError(f"{args.input}: cannot read: {err.strerror or err}") from None
        try:
            fout = sys.stdout if args.output == "-" else stack.enter_context(open(args.output, "w", encoding="utf-8"))
        except OSError as err:
            raise DataError(f"{args.output}: cannot write: {err.strerror or err}") from None

        lineno = 0
        while True:
            try:
                line = fin.readline()
            except UnicodeDecodeError as err:
                lineno += 1
                raise DataError(f"{source}:{lineno}: not valid UTF-8 ({err.reason}); stopped reading") from None
            if not line:
                break
            lineno += 1
            if not line.strip():
                continue  # blank lines are allowed in JSONL
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                _error(source, lineno, f"invalid JSON ({err.msg} at column {err.colno})")
                n_bad += 1
                continue
            if not isinstance(obj, dict):
                _error(source, lineno, "expected a JSON object with a \"text\" field")
                n_bad += 1
                continue
            if "text" not in obj:
                _error(source, lineno, 'missing "text" field')
                n_bad += 1
                continue
            text = obj["text"]
            if not isinstance(text, str):
                _error(source, lineno, f'"text" must be a string, not {type(text).__name__}')
                n_bad += 1
                continue
            if not text.strip():
                _error(source, lineno, '"text" is empty')
                n_bad += 1
                continue
            if len(text) > config.max_chars:
                _error(source, lineno, f'"text" has {len(text)} characters, over the limit of {config.max_chars} (--max-chars)')
                n_bad += 1
                continue
            session_key = obj.get("session")
            if session_key is None or vault is not None:
                session = default_session
            else:
                session = sessions.setdefault(str(session_key), ConversationSession(conversation_id=str(session_key)))
            try:
                result = sanitizer.sanitize(text, session)
            except SanitizationError as err:
                _error(source, lineno, f"not sanitized: {err}")
                n_bad += 1
                continue
            out = {
                "id": obj.get("id"),
                "sanitized": result.sanitized,
                "entities": [
                    {"type": e.type, "start": e.start, "end": e.end, "replacement": e.replacement} for e in result.entities
                ],
                "residual_risk": result.residual_risk,
            }
            fout.write(json.dumps(out, ensure_ascii=False) + "\n")
            fout.flush()
            n_ok += 1
    if n_bad:
        print(f"fedpriv sanitize: {n_ok} line(s) sanitized, {n_bad} line(s) with errors", file=sys.stderr)
        return 1
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    from client.gateway.evaluation import render_table, run_eval as _run, save_json

    if args.n < 1:
        raise FedprivError("--n must be at least 1")
    console = Console()
    with console.status(f"generating {args.n} prompts and sanitizing them ..."):
        report = _run(n=args.n, seed=args.seed, config_path=args.config, baseline=not args.no_baseline, keep_examples=args.examples,
                      template_set=args.templates)
    render_table(report, console)
    for ex in report.get("examples", []):
        console.print(f"{ex['id']} leaked {ex['type']}:", style="dim", highlight=False, markup=False)
        console.print("   " + ex["sanitized"], highlight=False, markup=False)
    if args.json:
        save_json(report, args.json)
        console.print(f"saved {args.json}")
    return 0
