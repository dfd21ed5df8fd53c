"""Held-out loss in bits per byte: the per-token loss rescaled by tokens per byte of the scored text,
so that models with different tokenizers compare (client.dp_training)."""

from __future__ import annotations

import math

import pytest

from client.dp_training import bits_per_byte, encode, evaluate, evaluated_text_bytes, held_out_bits_per_byte, target_token_count, token_log_probs
from fedpriv.modeling import load_base_model, load_tokenizer


def test_bits_per_byte_of_a_summed_nll() -> None:
    assert bits_per_byte(8 * math.log(2), 8) == pytest.approx(1.0)
    assert bits_per_byte(3 * math.log(2), 2) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)


def test_scored_bytes_are_the_text_after_the_first_token_within_the_truncation() -> None:
    tokenizer = load_tokenizer("default")
    texts = ["Pt c/o chest pain x2d, café au lait spots noted.", "BP 120/80."]
    full = encode(tokenizer, texts, 128)
    ids = [row[mask.bool()].tolist() for row, mask in zip(full.tensors[0], full.tensors[1])]
    # The default tokenizer is byte-level and adds no BOS: the scored text decodes from the tokens themselves.
    expected = sum(len(tokenizer.decode(row[1:]).encode("utf-8")) for row in ids)
    assert evaluated_text_bytes(tokenizer, texts, 128) == expected
    assert target_token_count(full) == sum(len(row) - 1 for row in ids)
    short = encode(tokenizer, texts, 8)
    kept = [row[mask.bool()].tolist() for row, mask in zip(short.tensors[0], short.tensors[1])]
    assert evaluated_text_bytes(tokenizer, texts, 8) == sum(len(tokenizer.decode(row[1:]).encode("utf-8")) for row in kept) < expected


def test_held_out_bits_per_byte_is_the_summed_token_nll_over_the_scored_bytes() -> None:
    tokenizer, model = load_tokenizer("default"), load_base_model("default")
    texts = ["Discharge summary (cardiology): admitted with chest pain.", "Follow up in two weeks, sooner if worse."]
    dataset = encode(tokenizer, texts, 64)
    loss, _ = evaluate(model, dataset)
    summed = -float(token_log_probs(model, dataset).double().sum())
    assert held_out_bits_per_byte(loss, dataset, tokenizer, texts, 64) == pytest.approx(
        summed / math.log(2) / evaluated_text_bytes(tokenizer, texts, 64), rel=1e-9)
