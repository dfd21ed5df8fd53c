"""The shipped default model (fedpriv/assets/default-model, what `model = "default"` loads through
fedpriv.modeling): its files and size, the tokenizer's specials and round trips, and that it is
actually pretrained (offline, CPU)."""

from __future__ import annotations

import json
import math

import pytest

from fedpriv.errors import ConfigError
from fedpriv.modeling import DEFAULT_MODEL_DIR, load_base_model, load_tokenizer, resolve_model
from simulations.synthetic import public_split

MODEL_DIR = DEFAULT_MODEL_DIR


def test_resolve_model_default_folder_and_bad_paths(tmp_path) -> None:
    assert resolve_model("default") == str(MODEL_DIR)
    assert resolve_model("org/some-model") == "org/some-model"  # a hub id, resolved from the local cache
    with pytest.raises(ConfigError) as err:
        resolve_model(str(tmp_path / "no-such-model"))
    assert err.value.key == "model"
    with pytest.raises(ConfigError, match="config.json"):
        resolve_model(str(tmp_path))  # exists, but is no model directory


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


@pytest.fixture(scope="module")
def model():
    import torch

    m = load_base_model("default")
    assert next(m.parameters()).dtype == torch.float32  # Opacus and ArrayRecord need fp32
    return m.eval()


def test_model_folder_contents_and_size() -> None:
    files = {p.name for p in MODEL_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "BUILD.md"} <= files
    assert not any(name.endswith((".bin", ".pt")) for name in files)
    size = sum(p.stat().st_size for p in MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 20 * 1024 * 1024
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is True
    assert config.get("dtype", config.get("torch_dtype")) == "float32"


def test_tokenizer_specials_and_chat_template(tokenizer) -> None:
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    assert 2048 <= len(tokenizer) <= 4096
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there 👋"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<s>") and "Hi there 👋" in rendered and rendered.endswith("<|assistant|>\n")
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in ids
    parts = [{"role": "user", "content": [{"type": "text", "text": "part one"}]}]
    assert "part one" in tokenizer.apply_chat_template(parts, tokenize=False)


@pytest.mark.parametrize(
    "text",
    [
        "Pt c/o CP x 2d. BP 142/91, HR 88. MRN# 12-004821 — seen 03/14/2024.",
        "omg 😂😂😂 see u at 7!!! 👍🏽 ❤️‍🔥 🇺🇸",
        "日本語のテキスト、中文文本，한국어 텍스트, русский текст, العربية, हिन्दी",
        "Crème brûlée, naïve façade, Ærøskøbing, São Paulo, Łódź",
        "  leading and  double  spaces\ttabs\nnewlines\r\n and trailing   ",
        "math: ∑∫√∞ ≤ ≥ ≠ ± × ÷; symbols ©®™§¶†‡ ; zero-width\u200bjoin; nbsp\u00a0here",
        "<s> literal </s> specials and <|user|> markers",
        "",
    ],
)
def test_tokenizer_round_trips_any_utf8(tokenizer, text: str) -> None:
    ids = tokenizer.encode(text)
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_tokenizer_round_trips_random_unicode(tokenizer) -> None:
    import random

    rng = random.Random(0)
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x600, 0x6FF), (0x900, 0x97F),
              (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF)]
    for _ in range(50):
        chars = [chr(rng.randint(*rng.choice(ranges))) for _ in range(rng.randint(1, 40))]
        text = "".join(chars)
        assert tokenizer.decode(tokenizer.encode(text)) == text


def _heldout_loss(model, tokenizer, texts: list[str]) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer.encode(text), tokenizer.eos_token_id]])
            n = ids.shape[1] - 1
            total += model(input_ids=ids, labels=ids).loss.item() * n
            count += n
    return total / count


def test_pretrained_perplexity_far_below_random_init(model, tokenizer) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    info = json.loads((MODEL_DIR / "build_info.json").read_text())
    cfg = info["config"]
    torch.set_num_threads(min(2, torch.get_num_threads()))
    _, heldout = public_split(cfg["public_records"], seed=cfg["seed"], heldout_fraction=cfg["heldout_fraction"])
    sample = heldout[:40]
    pretrained = math.exp(_heldout_loss(model, tokenizer, sample))
    torch.manual_seed(1234)
    random_model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(MODEL_DIR)).eval()
    random_init = math.exp(_heldout_loss(random_model, tokenizer, sample))
    assert random_init > 0.25 * len(tokenizer)  # a random init is ~uniform over the vocabulary
    assert pretrained < 0.25 * random_init
    assert pretrained < 30
