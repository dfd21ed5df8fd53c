"""Base models compared on client text before any training: perplexity and bits per byte.

    python -m simulations.studies.bits_per_byte [--models default smollm2-135m] [--notes 60] [--chars 120]

Scores the first NOTES notes of the cardiology department (hospital-00 of the default synthetic
hospital federation: seed 0, 200 records per client), each cut to its first CHARS characters, with the product's own evaluation
(`client.dp_training.evaluate` and `held_out_bits_per_byte`). Perplexity is per token, so it depends
on the tokenizer (3,072 byte-level tokens for the default model, 49,152 for SmolLM2); bits per byte
does not, so only it compares the two models. Each model must be installed or shipped (offline).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence


def score(model_name: str, texts: list[str], max_seq_len: int) -> dict[str, float | int]:
    from client.dp_training import encode, evaluate, evaluated_text_bytes, held_out_bits_per_byte, target_token_count
    from fedpriv.modeling import load_base_model, load_tokenizer

    tokenizer = load_tokenizer(model_name)
    model = load_base_model(model_name)
    dataset = encode(tokenizer, texts, max_seq_len)
    loss, perplexity = evaluate(model, dataset)
    return {
        "vocabulary": len(tokenizer),
        "tokens": target_token_count(dataset),
        "bytes": evaluated_text_bytes(tokenizer, texts, max_seq_len),
        "loss": loss,
        "perplexity": perplexity,
        "bits_per_byte": held_out_bits_per_byte(loss, dataset, tokenizer, texts, max_seq_len),
        "truncated": int(sum(len(tokenizer(t)["input_ids"]) > max_seq_len for t in texts)),
    }


def cardiology_notes(notes: int, chars: int) -> list[str]:
    from simulations.synthetic import generate_federation

    # The federation `fedpriv simulate` writes by default (200 records per client, seed 0): which
    # records carry identifiers depends on the record count, so a shorter federation has other notes.
    federation = generate_federation("hospital", num_clients=1, records_per_client=max(notes, 200), seed=0)
    return [text[:chars] for text in federation["hospital-00-cardiology"][:notes]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["default", "smollm2-135m"])
    parser.add_argument("--notes", type=int, default=60)
    parser.add_argument("--chars", type=int, default=120)
    parser.add_argument("--max-seq-len", type=int, default=96, help="long enough that no note is cut further")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from rich.console import Console
    from rich.table import Table

    texts = cardiology_notes(args.notes, args.chars)
    table = Table(title=f"Before training: first {args.notes} cardiology notes, first {args.chars} characters")
    for column in ("model", "vocab", "tokens", "bytes", "nats/tok", "ppl", "bits/byte"):
        table.add_column(column, justify="right")
    for name in args.models:
        r = score(name, texts, args.max_seq_len)
        if r["truncated"]:
            raise SystemExit(f"{r['truncated']} notes exceed --max-seq-len {args.max_seq_len} tokens with {name}; raise it")
        table.add_row(name, f"{r['vocabulary']:,}", f"{r['tokens']:,}", f"{r['bytes']:,}", f"{r['loss']:.3f}", f"{r['perplexity']:.1f}",
                      f"{r['bits_per_byte']:.2f}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
