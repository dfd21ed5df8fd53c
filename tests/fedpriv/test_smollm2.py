"""SmolLM2-135M-Instruct end to end: install it from the package registry into a fresh cache, load it
offline, take one DP-LoRA step in each per-sample gradient mode (Opacus hooks and ghost) that moves the
adapter and improves held-out loss (the opacus#820 guard on a real pretrained model: tied
embeddings, grouped-query attention, a 49,152-token output layer), and answer a question through the gateway's local model.

Slow (about 2 min on 2 idle cores: the download is ~2 s, the GGUF conversion ~35 s, the DP step on
16 records x 32 tokens a few seconds per mode); kept short by one fixed thread count and short sequences.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from fedpriv.cli import main
from fedpriv.models.registry import ENV_CACHE, SMOLLM2_135M, install_record, model_dir

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France? Answer in one sentence."


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_install_then_offline_dp_lora_step_and_a_greedy_answer(tmp_path, monkeypatch, two_threads, optimizer_steps, capsys) -> None:
    from client.dp_training import encode, evaluate, train_locally
    from client.gateway.local_model import LocalModel
    from client.privacy_ledger import PrivacyLedger
    from fedpriv.config import RunConfig
    from fedpriv.modeling import adapter_state, build_lora_model, load_adapter_state, load_base_model, load_tokenizer
    from simulations.synthetic import generate_federation

    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the conversion and every load below are offline
    started = time.monotonic()
    assert main(["model", "install", SMOLLM2_135M.name]) == 0
    installed = time.monotonic()
    record = install_record(SMOLLM2_135M.name)
    assert record is not None and record["parameters"] == SMOLLM2_135M.parameters
    assert {p.name for p in model_dir(SMOLLM2_135M.name).iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "install.json"}
    assert main(["model", "install", SMOLLM2_135M.name]) == 0  # already installed: nothing to do
    assert "already installed" in capsys.readouterr().err

    tokenizer = load_tokenizer(SMOLLM2_135M.name)
    base = load_base_model(SMOLLM2_135M.name)
    assert type(base).__name__ == "LlamaForCausalLM" and sum(p.numel() for p in base.parameters()) == SMOLLM2_135M.parameters
    assert base.config.tie_word_embeddings and base.lm_head.weight is base.model.embed_tokens.weight
    assert base.config.num_key_value_heads < base.config.num_attention_heads  # grouped-query attention
    assert len(tokenizer) == 49_152

    # One DP-SGD step per per-sample gradient mode: 16 records and batch 16, so Poisson sampling at
    # q = 1 takes exactly one step; both start from the same fresh adapter.
    texts = generate_federation("hospital", num_clients=1, records_per_client=200, seed=0)["hospital-00-cardiology"]
    train_set, held_out = encode(tokenizer, texts[:16], 32), encode(tokenizer, texts[100:116], 32)
    settings = {"model": SMOLLM2_135M.name, "dp": "record", "rounds": 1, "local_epochs": 1, "batch_size": 16, "max_seq_len": 32,
                "noise_multiplier": 0.5, "learning_rate": 0.02, "dp_step_size": "fixed"}
    model = build_lora_model(RunConfig(**settings).validated(), base)
    before = adapter_state(model)
    loss_before, _ = evaluate(model, held_out)
    for mode in ("hooks", "ghost"):
        config = RunConfig(**settings, grad_sample_mode=mode).validated()
        load_adapter_state(model, before)
        optimizer_steps.steps.clear()
        ledger = PrivacyLedger()
        outcome = train_locally(model, train_set, config, ledger, seed=0)
        assert outcome.round_steps == ledger.steps == len(optimizer_steps.steps) == 1, mode
        assert optimizer_steps.unchanged_tensors() == [], mode  # the step moved every LoRA tensor
        after = adapter_state(model)
        assert all(not torch.equal(before[k], after[k]) and torch.isfinite(after[k]).all() for k in before), mode
        loss_after, _ = evaluate(model, held_out)
        assert loss_after < loss_before - 0.01, (mode, loss_before, loss_after)
        assert ledger.epsilon(1e-5) > 0
    trained = time.monotonic()

    answer = LocalModel(SMOLLM2_135M.name, max_new_tokens=24).answer(QUESTION)  # greedy, through the chat template
    assert "Paris" in answer.text, answer.text
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    print(f"install {installed - started:.1f} s, load + DP steps {trained - installed:.1f} s, answer {time.monotonic() - trained:.1f} s")
