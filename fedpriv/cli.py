"""The single console entry point, ``fedpriv``.

Each subcommand lives next to the code it drives (simulation in ``simulations/``, the privacy
gateway in ``client/gateway/`` ...). A command module exposes ``add_parser(subparsers)`` which
registers one or more subcommands and sets ``func`` on them; heavy imports stay inside the
command functions so ``fedpriv --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fedpriv.errors import FedprivError

# Order is the order shown in `fedpriv --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "simulations.commands",
    "simulations.personalize_command",
    "simulations.model_command",
    "client.gateway.ask_command",
    "client.gateway.sanitize_command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedpriv",
        description="Privacy-preserving federated personalization (DP-LoRA + Flower + sanitized cloud prompts).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
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
