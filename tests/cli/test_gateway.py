"""`fedpriv ask` flags that reach the local model: their defaults are the library's, and
`--local-max-tokens` caps the on-device answer (on the shipped default model)."""

from __future__ import annotations

import json

import pytest

from client.gateway.gateway import GatewayOptions
from client.gateway.local_model import DEFAULT_MODEL_DIR
from fedpriv.cli import build_parser, main


def test_ask_defaults_are_the_gateways():
    args = build_parser().parse_args(["ask", "hello"])
    options = GatewayOptions()
    assert args.route == options.route
    assert args.min_confidence == options.min_confidence
    assert args.max_residual_risk == options.max_residual_risk
    assert args.local_max_tokens == options.local_max_new_tokens
    assert args.max_prompt_chars == options.max_prompt_chars
    assert args.max_tokens == options.max_tokens
    assert args.local_model == options.local_model


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_local_max_tokens_must_be_a_positive_integer(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["ask", "--local-max-tokens", value, "hello"])
    assert exit_info.value.code == 2 and "--local-max-tokens" in capsys.readouterr().err


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="default model not built")
def test_local_max_tokens_caps_the_local_answer(tmp_path, capsys):
    def answer(tokens: int) -> str:
        code = main(["ask", "--route", "local", "--local-max-tokens", str(tokens), "--state-dir", str(tmp_path / "gw"),
                     "--json", "What is the capital of France?"])
        assert code == 0
        result = json.loads(capsys.readouterr().out)
        assert result["route"] == "local" and 0.0 < result["confidence"] <= 1.0
        return result["answer"]

    short, long = answer(2), answer(24)
    assert len(short) < len(long) and long.startswith(short)  # greedy: the first two tokens are the same
