"""``fedpriv sanitize``: identifiers out of JSONL prompts (`client.gateway.batch.sanitize_lines`).

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
import sys
from dataclasses import replace

from fedpriv.errors import FedprivError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
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


def run_sanitize(args: argparse.Namespace) -> int:
    from client.gateway.lean_import import import_presidio_lean

    import_presidio_lean(defer_predefined=True)  # this process builds no Presidio default engine

    from client.gateway.batch import open_input, open_output, sanitize_lines
    from client.gateway.config import load_config
    from client.gateway.sanitizer import PromptSanitizer
    from client.gateway.session import EncryptedVault

    if args.max_chars is not None and args.max_chars < 1:
        raise FedprivError("--max-chars must be a positive integer")
    if bool(args.vault) != bool(args.key_file):
        raise FedprivError("--vault and --key-file go together")
    config = load_config(args.config)
    if args.max_chars is not None:
        config = replace(config, max_chars=args.max_chars)
    sanitizer = PromptSanitizer(config)
    vault = EncryptedVault(args.vault, key_file=args.key_file) if args.vault else None
    source = "<stdin>" if args.input == "-" else args.input

    def report(lineno: int, kind: str, message: str) -> None:
        print(f"fedpriv sanitize: {source}:{lineno}: {kind}: {message}", file=sys.stderr)

    with open_input(args.input) as fin, open_output(args.output, args.input) as fout:
        n_ok, n_bad = sanitize_lines(fin, fout, sanitizer, report, vault)
    if n_bad:
        print(f"fedpriv sanitize: {n_ok} line(s) sanitized, {n_bad} line(s) with errors", file=sys.stderr)
        return 1
    return 0
