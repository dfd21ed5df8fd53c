"""The on-device model: answers prompts locally and says how sure it is.

Confidence of an answer = geometric-mean probability of the tokens of the model's own greedy
answer, ``exp(mean log p(token))``, in (0, 1]; the mean per-token entropy of the next-token
distribution is reported next to it. The router keeps a prompt on the device when confidence is
high enough.

Models load offline: ``HF_HUB_OFFLINE=1`` unless the user set it otherwise. `--local-model` takes
"default" (the small Llama shipped in ``fedpriv/assets/default-model``), an installed model
(``fedpriv model install smollm2-135m``), a local directory, or a Hugging Face id already in the
local cache.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fedpriv.errors import FedprivError
from fedpriv.models.registry import installed_model_dir

DEFAULT_LOCAL_MODEL = "default"
# Long enough for a short answer; confidence is the mean over these tokens, and each costs a forward pass.
DEFAULT_LOCAL_MAX_NEW_TOKENS = 64
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "fedpriv" / "assets" / "default-model"


class LocalModelError(FedprivError):
    pass


def offline_by_default() -> None:
    """Never reach the Hugging Face hub unless the user explicitly set HF_HUB_OFFLINE=0."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])


def resolve_local_model(spec: str | None, key: str = "--local-model") -> str:
    """'default'/None -> the shipped model dir; an installable model (`fedpriv model list`) -> its cache
    folder (not installed: a ConfigError naming the install command, never a silent fallback to the
    cloud); an existing dir -> its absolute path; else a hub id."""
    if spec is None or spec == DEFAULT_LOCAL_MODEL:
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise LocalModelError(
                f"the default local model is missing from {DEFAULT_MODEL_DIR}; build it (`python -m simulations.studies.default_model`) "
                "or pass --local-model PATH"
            )
        return str(DEFAULT_MODEL_DIR)
    installed = installed_model_dir(spec, key)
    if installed is not None:
        return str(installed)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LocalModelError(f"--local-model {spec}: no config.json there, not a Hugging Face model directory")
        return str(path.resolve())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise LocalModelError(f"--local-model {spec}: path not found")
    return spec  # a hub id, resolved from the local cache (offline)


@dataclass
class LocalAnswer:
    text: str
    confidence: float  # exp(mean token log-prob), 0..1
    mean_logprob: float
    mean_entropy: float  # nats
    num_tokens: int
    too_long: bool = False  # the prompt did not fit the model's context: no answer


class LocalModel:
    """Lazily loaded causal LM + tokenizer, greedy decoding with per-token confidence."""

    def __init__(self, spec: str | None = DEFAULT_LOCAL_MODEL, *, max_new_tokens: int = DEFAULT_LOCAL_MAX_NEW_TOKENS, system_prompt: str | None = None) -> None:
        self.spec = spec
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        return resolve_local_model(self.spec)

    def load(self):
        with self._lock:
            if self._model is None:
                offline_by_default()
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                source = self.source
                try:
                    tokenizer = AutoTokenizer.from_pretrained(source)
                    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
                except (OSError, ValueError) as err:
                    raise LocalModelError(f"cannot load the local model {source!r} offline: {err}") from None
                model.eval()
                self._model, self._tokenizer = model, tokenizer
        return self._model, self._tokenizer

    def _encode(self, tokenizer, prompt: str):
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        if getattr(tokenizer, "chat_template", None):
            encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            return encoded["input_ids"], encoded.get("attention_mask")
        encoded = tokenizer(prompt, return_tensors="pt")
        return encoded["input_ids"], encoded.get("attention_mask")

    def answer(self, prompt: str) -> LocalAnswer:
        import torch

        model, tokenizer = self.load()
        input_ids, attention_mask = self._encode(tokenizer, prompt)
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit and input_ids.shape[1] + 1 > limit:
            return LocalAnswer("", 0.0, float("-inf"), float("inf"), 0, too_long=True)
        max_new = self.max_new_tokens if not limit else max(1, min(self.max_new_tokens, limit - input_ids.shape[1]))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask if attention_mask is not None else torch.ones_like(input_ids),
                max_new_tokens=max_new,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=pad_id,
            )
        generated = out.sequences[0, input_ids.shape[1] :]
        logprobs: list[float] = []
        entropies: list[float] = []
        for step, token in enumerate(generated.tolist()):
            if step >= len(out.logits):
                break
            log_p = torch.log_softmax(out.logits[step][0].float(), dim=-1)
            logprobs.append(float(log_p[token]))
            entropies.append(float(-(log_p.exp() * log_p).sum()))
        text = tokenizer.decode(generated, skip_special_tokens=True).strip()
        if not logprobs or not text:
            return LocalAnswer(text, 0.0, float("-inf"), float("inf"), len(logprobs))
        mean_lp = sum(logprobs) / len(logprobs)
        return LocalAnswer(
            text=text,
            confidence=math.exp(mean_lp),
            mean_logprob=mean_lp,
            mean_entropy=sum(entropies) / len(entropies),
            num_tokens=len(logprobs),
        )
