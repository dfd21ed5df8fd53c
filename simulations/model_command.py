"""``fedpriv build-model``: rebuild the embedded default model (fedpriv/assets/default-model/)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    # Only light imports here: `fedpriv --help` must stay fast.
    from simulations.build_default_model import add_arguments

    parser = subparsers.add_parser(
        "build-model",
        help="rebuild the default small model (tokenizer + Llama LM) from the public corpus, offline",
        description=(
            "Train the byte-level BPE tokenizer and pretrain the small Llama-architecture model on the "
            "synthetic public corpus (CPU, ~3 min on 2 cores); writes safetensors, tokenizer, BUILD.md."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from simulations.build_default_model import run

    run(args)
    return 0
