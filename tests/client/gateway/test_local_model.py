"""The local model's confidence is the probability of the answer it actually gave, and `auto` decides
on it: checked on the shipped default model against an independent greedy decoding (one full forward
pass per token, no generate(), no cache)."""

from __future__ import annotations

import math

import pytest

from client.gateway.local_model import DEFAULT_MODEL_DIR, LocalModel
from tests.fake_cloud import FakeCloud

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="default model not built")

PROMPTS = ["What is the capital of France?", "Summarize the follow-up plan for my patient."]


@pytest.fixture(scope="module")
def local_model():
    model = LocalModel("default", max_new_tokens=24)
    model.load()
    return model


def greedy_by_hand(model, tokenizer, prompt: str, max_new_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy decoding written out: the argmax token of each full forward pass and its log-probability."""
    import torch

    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    tokens, logprobs = [], []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            log_p = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
            token = int(log_p.argmax())
            tokens.append(token)
            logprobs.append(float(log_p[token]))
            if token in eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokens, logprobs


@pytest.mark.parametrize("prompt", PROMPTS)
def test_confidence_is_the_geometric_mean_probability_of_the_greedy_answer(local_model, prompt):
    model, tokenizer = local_model.load()
    answer = local_model.answer(prompt)
    tokens, logprobs = greedy_by_hand(model, tokenizer, prompt, local_model.max_new_tokens)
    assert answer.text == tokenizer.decode(tokens, skip_special_tokens=True).strip()
    assert answer.num_tokens == len(tokens)
    assert answer.mean_logprob == pytest.approx(sum(logprobs) / len(logprobs), abs=1e-4)
    assert answer.confidence == pytest.approx(math.exp(sum(logprobs) / len(logprobs)), rel=1e-4)
    assert 0.0 < answer.confidence < 1.0


def test_auto_keeps_the_answer_exactly_from_its_confidence_up(local_model, tmp_path):
    """At --min-confidence equal to the answer's confidence `auto` answers on the device and sends
    nothing; just above it, the prompt goes (sanitized) to the cloud, and the reason says why."""
    from client.gateway.cloud import CloudClient
    from client.gateway.gateway import Gateway, default_sanitizer
    from client.gateway.keys import DeviceKey
    from client.gateway.outgoing_log import OutgoingLog
    from client.gateway.router import Router

    prompt = PROMPTS[0]
    confidence = local_model.answer(prompt).confidence
    sanitizer, new_session = default_sanitizer(None)
    with FakeCloud() as cloud:
        log = OutgoingLog(tmp_path / "gw" / "outgoing.jsonl", DeviceKey.load_or_create(tmp_path / "gw"))
        client = CloudClient(cloud.url, None, log=log, timeout=10)

        def ask(min_confidence: float):
            router = Router("auto", min_confidence=min_confidence)
            return Gateway(sanitizer=sanitizer, new_session=new_session, router=router, cloud=client, local=local_model).ask(prompt)

        kept = ask(confidence)
        assert kept.route == "local" and kept.answer == local_model.answer(prompt).text
        assert f"{confidence:.2f} >= {confidence:.2f}" in kept.reason and cloud.requests == []
        sent = ask(min(1.0, confidence + 1e-3))
        assert sent.route == "cloud" and "local model not confident" in sent.reason
        assert len(cloud.requests) == 1 and sent.confidence == pytest.approx(confidence, abs=1e-4)
