"""The one console entry point, ``fedpriv``: every subcommand lives in this folder.

Each module here is a thin parser over library functions (as Flower keeps ``flwr/cli/``): it
exposes ``add_parser(subparsers)``, which registers its subcommands and sets ``func`` on them.
Heavy imports (torch, Flower, Presidio) stay inside the command functions so ``fedpriv --help``
is fast. This package is the top layer: it may import any part of the product, and nothing
imports it. Studies and benchmarks are not commands; they run as ``python -m simulations.studies...``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fedpriv.cli import deploy, gateway, model, personalize, sanitize, simulate
from fedpriv.errors import FedprivError

# Order is the order shown in `fedpriv --help`.
COMMANDS = (simulate, personalize, deploy, gateway, sanitize, model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedpriv",
        description="Privacy-preserving federated personalization (DP-LoRA + Flower + sanitized cloud prompts).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except FedprivError as err:
        # User-facing errors: one clear line, no traceback.
        print(f"fedpriv {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fedpriv {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
