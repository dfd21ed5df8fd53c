"""Build the embedded default model (``fedpriv/assets/default-model/``), fully offline.

1. generate the public corpus (:func:`simulations.synthetic.public_split`: generic medical notes +
   neutral messages, with a held-out split);
2. train a byte-level BPE tokenizer on the train split (any UTF-8 text encodes; ``<s> </s> <pad>
   <unk>`` specials; a small chat template so ``transformers serve`` can serve it);
3. pretrain a small Llama-architecture causal LM on packed sequences with AdamW (CPU, 2 threads);
4. save fp32 safetensors + tokenizer, and write ``BUILD.md`` / ``build_info.json`` with the
   held-out perplexity of a random init vs. the pretrained model.

Rebuild: ``python -m simulations.studies.default_model``.
The result is deterministic for a given seed, step count and thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "fedpriv" / "assets" / "default-model"

SPECIAL_TOKENS = ("<s>", "</s>", "<pad>", "<unk>")

# Jinja chat template: "<s><|role|>\ncontent</s>\n ..." (+ "<|assistant|>\n" as generation prompt).
# Accepts OpenAI-style content lists ([{"type": "text", "text": ...}]) as well as plain strings.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ eos_token + '\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


@dataclass
class BuildConfig:
    seed: int = 0
    steps: int = 320
    public_records: int = 20000
    heldout_fraction: float = 0.05
    chat_fraction: float = 0.05  # share of extra training docs rendered with the chat template
    # Data noising (Xie et al. 2017, "Data noising as smoothing in neural network language models"):
    # in this share of training docs, each word is replaced by (or preceded by) a word drawn from the
    # corpus unigram distribution with probability `word_noise`. Synthetic template text is very
    # low-entropy; without smoothing the model becomes absurdly overconfident and assigns near-zero
    # probability to anything off-template (e.g. a client's own notes), which hurts personalization.
    noised_doc_fraction: float = 0.5
    word_noise: float = 0.1
    label_smoothing: float = 0.0
    vocab_size: int = 3072
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    max_position_embeddings: int = 256
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    threads: int = 2


@dataclass
class BuildReport:
    config: BuildConfig
    command: str
    vocab_size: int = 0
    train_records: int = 0
    heldout_records: int = 0
    chat_docs: int = 0
    train_tokens: int = 0
    heldout_tokens: int = 0
    train_blocks: int = 0
    epochs: float = 0.0
    param_count: int = 0
    random_init_perplexity: float = 0.0
    pretrained_perplexity: float = 0.0
    random_init_loss: float = 0.0
    pretrained_loss: float = 0.0
    final_train_loss: float = 0.0
    tokenizer_seconds: float = 0.0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    load_average: list[float] = field(default_factory=list)  # 1-min load at start and end (shared machine?)
    lora_check_seconds: float = 0.0
    folder_bytes: int = 0
    lora_check: dict[str, float | int | str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)


# -- tokenizer --------------------------------------------------------------------------------------
def train_tokenizer(texts: list[str], vocab_size: int, max_length: int):
    """Byte-level BPE (GPT-2 style pre-tokenizer, no normalizer) -> PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def chat_docs(texts: list[str], fraction: float, seed: int) -> list[str]:
    """A few (user, assistant) pairs rendered with the chat template, so the served model has seen
    the format (pairs are arbitrary public texts of the same domain)."""
    import random

    from simulations.synthetic.common import derive_seed

    rng = random.Random(derive_seed(seed, "chat-docs"))
    n = int(len(texts) * fraction)
    docs = []
    for _ in range(n):
        user, reply = rng.sample(texts, 2)
        docs.append(f"<|user|>\n{user}</s>\n<|assistant|>\n{reply}")
    return docs


def noise_docs(texts: list[str], doc_fraction: float, rate: float, seed: int) -> list[str]:
    """Unigram word noising of a share of the docs (deterministic for a seed)."""
    import random

    from simulations.synthetic.common import derive_seed

    if doc_fraction <= 0 or rate <= 0:
        return list(texts)
    rng = random.Random(derive_seed(seed, "word-noise"))
    unigram = [w for t in texts for w in t.split()]
    out: list[str] = []
    for text in texts:
        if rng.random() >= doc_fraction:
            out.append(text)
            continue
        words: list[str] = []
        for word in text.split(" "):
            r = rng.random()
            if r < rate / 2:
                words.append(rng.choice(unigram))  # substitution
            elif r < rate:
                words.extend((rng.choice(unigram), word))  # insertion
            else:
                words.append(word)
        out.append(" ".join(words))
    return out


def pack(tokenizer, texts: list[str], seq_len: int):
    """Concatenate ``<s> text </s>`` documents and cut into ``seq_len`` blocks (remainder dropped)."""
    import torch

    ids: list[int] = []
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.append(bos)
        ids.extend(enc)
        ids.append(eos)
    n_blocks = len(ids) // seq_len
    return torch.tensor(ids[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len), len(ids)


def evaluate(model, blocks, batch_size: int = 32) -> float:
    """Mean next-token negative log-likelihood (nats/token) over packed blocks."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            batch = blocks[i : i + batch_size]
            logits = model(input_ids=batch).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), reduction="sum"
            )
            total += loss.item()
            count += batch[:, 1:].numel()
    model.train()
    return total / max(count, 1)


def make_model_config(cfg: BuildConfig, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
    )


def _lr_at(step: int, cfg: BuildConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- build ------------------------------------------------------------------------------------------
def build(
    out: Path = DEFAULT_OUT, cfg: BuildConfig | None = None, command: str | None = None, *, lora_check: bool = True
) -> BuildReport:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = cfg or BuildConfig()
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    import random

    import numpy as np
    import tokenizers
    import torch
    import transformers
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from transformers import LlamaForCausalLM

    from simulations.synthetic import public_split

    console = Console()
    command = command or canonical_command(out, cfg)
    report = BuildReport(config=cfg, command=command)
    report.versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    # 1. corpus
    train_texts, heldout_texts = public_split(cfg.public_records, seed=cfg.seed, heldout_fraction=cfg.heldout_fraction)
    chat = chat_docs(train_texts, cfg.chat_fraction, cfg.seed)
    report.train_records, report.heldout_records, report.chat_docs = len(train_texts), len(heldout_texts), len(chat)
    console.print(f"public corpus: {len(train_texts)} train / {len(heldout_texts)} held-out records (+{len(chat)} chat docs)")

    # 2. tokenizer
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(train_texts + chat, cfg.vocab_size, cfg.max_position_embeddings)
    report.tokenizer_seconds = time.perf_counter() - t0
    report.vocab_size = len(tokenizer)
    train_docs = noise_docs(train_texts, cfg.noised_doc_fraction, cfg.word_noise, cfg.seed) + chat
    random.Random(cfg.seed).shuffle(train_docs)
    train_blocks, report.train_tokens = pack(tokenizer, train_docs, cfg.seq_len)
    heldout_blocks, report.heldout_tokens = pack(tokenizer, heldout_texts, cfg.seq_len)
    report.train_blocks = len(train_blocks)
    console.print(
        f"tokenizer: vocab {len(tokenizer)} ({report.tokenizer_seconds:.1f}s); "
        f"{report.train_tokens} train tokens -> {len(train_blocks)} blocks of {cfg.seq_len}; "
        f"{report.heldout_tokens} held-out tokens"
    )

    # 3. model (random init = the starting point of pretraining)
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(make_model_config(cfg, tokenizer))
    model.train()
    report.param_count = sum(p.numel() for p in model.parameters())
    report.random_init_loss = evaluate(model, heldout_blocks)
    report.random_init_perplexity = math.exp(report.random_init_loss)
    console.print(f"model: {report.param_count:,} params; random-init held-out perplexity {report.random_init_perplexity:.1f}")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(train_blocks), generator=gen)
    cursor = 0
    ema = None
    t_train = time.perf_counter()
    columns = (
        TextColumn("[bold]pretraining"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f} lr {task.fields[lr]:.1e}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=cfg.steps, loss=float("nan"), lr=0.0)
        for step in range(cfg.steps):
            if cursor + cfg.batch_size > len(order):
                order = torch.randperm(len(train_blocks), generator=gen)
                cursor = 0
            batch = train_blocks[order[cursor : cursor + cfg.batch_size]]
            cursor += cfg.batch_size
            lr = _lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(input_ids=batch).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1), label_smoothing=cfg.label_smoothing
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ema = loss.item() if ema is None else 0.9 * ema + 0.1 * loss.item()
            progress.update(task, advance=1, loss=ema, lr=lr)
    report.train_seconds = time.perf_counter() - t_train
    report.final_train_loss = float(ema or float("nan"))
    report.epochs = cfg.steps * cfg.batch_size / max(1, len(train_blocks))

    report.pretrained_loss = evaluate(model, heldout_blocks)
    report.pretrained_perplexity = math.exp(report.pretrained_loss)
    console.print(
        f"held-out perplexity: random init {report.random_init_perplexity:.1f} -> pretrained {report.pretrained_perplexity:.2f}"
    )

    # 4. save
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                  "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (out / stale).unlink(missing_ok=True)
    model = model.to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    report.wall_seconds = time.perf_counter() - t_start
    report.cpu_seconds = time.process_time() - cpu_start
    if hasattr(os, "getloadavg"):
        report.load_average = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    if lora_check:
        t_check = time.perf_counter()
        # Reloads the saved folder with Auto* classes (also proves it loads offline).
        report.lora_check = lora_sanity_check(out, seed=cfg.seed, threads=cfg.threads)
        report.lora_check_seconds = time.perf_counter() - t_check
        console.print(
            "LoRA sanity check ({client}, {train_records} records, {steps} steps): held-out loss "
            "{loss_before:.3f} -> {loss_after:.3f}".format(**report.lora_check)
        )
    # BUILD.md / build_info.json are small; count them after writing for the final size.
    _write_reports(out, report)
    report.folder_bytes = _folder_bytes(out)
    _write_reports(out, report)
    console.print(
        f"saved to {out} ({report.folder_bytes / 1e6:.2f} MB); build {report.wall_seconds:.0f}s wall / "
        f"{report.cpu_seconds:.0f}s CPU (training {report.train_seconds:.0f}s)"
    )
    return report


def lora_sanity_check(
    model_dir: Path,
    *,
    profile: str = "hospital",
    client_index: int = 0,
    train_records: int = 160,
    heldout_records: int = 40,
    steps: int = 30,
    batch_size: int = 8,
    lr: float = 5e-3,
    seed: int = 0,
    threads: int = 2,
) -> dict[str, float | int | str]:
    """Fine-tune LoRA (r=8 on q_proj, v_proj) on one client's records; return held-out loss
    before/after. Personalization must help, otherwise the base model is useless downstream."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from simulations.synthetic import generate_federation

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    federation = generate_federation(profile, client_index + 1, train_records + heldout_records, seed=seed)
    client = sorted(federation)[client_index]
    texts = federation[client]
    train, heldout = texts[:train_records], texts[train_records:]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

    def batchify(chunk: list[str]):
        enc = tokenizer(
            [tokenizer.bos_token + t + tokenizer.eos_token for t in chunk],
            add_special_tokens=False, padding=True, truncation=True, max_length=128, return_tensors="pt",
        )
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return enc["input_ids"], enc["attention_mask"], labels

    def heldout_loss(m) -> float:
        m.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(heldout), 16):
                ids, mask, labels = batchify(heldout[i : i + 16])
                n = int((labels[:, 1:] != -100).sum())
                total += m(input_ids=ids, attention_mask=mask, labels=labels).loss.item() * n
                count += n
        m.train()
        return total / count

    before = heldout_loss(model)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    peft_model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(train), (batch_size,), generator=gen).tolist()
        ids, mask, labels = batchify([train[i] for i in idx])
        loss = peft_model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    after = heldout_loss(peft_model)
    return {
        "client": client,
        "train_records": len(train),
        "heldout_records": len(heldout),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "lora": "r=8, alpha=16, q_proj+v_proj",
        "trainable_params": trainable,
        "loss_before": before,
        "loss_after": after,
        "perplexity_before": math.exp(before),
        "perplexity_after": math.exp(after),
    }


def canonical_command(out: Path, cfg: BuildConfig) -> str:
    out = Path(out).resolve()
    try:
        shown = str(out.relative_to(REPO_ROOT))
    except ValueError:
        shown = str(out)
    return f"HF_HUB_OFFLINE=1 python -m simulations.studies.default_model --out {shlex.quote(shown)} --seed {cfg.seed} --steps {cfg.steps}"


def _write_reports(out: Path, report: BuildReport) -> None:
    cfg = report.config
    info = asdict(report)
    (out / "build_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    size = f"{report.folder_bytes / 1e6:.2f} MB" if report.folder_bytes else "(see below)"
    lc = report.lora_check
    load = " / ".join(f"{x:.2f}" for x in report.load_average) or "n/a"
    load_note = (
        f" (the machine was shared: times are inflated; on an idle 2-core machine a step takes ~0.4 s)"
        if report.load_average and max(report.load_average) > cfg.threads + 0.5
        else ""
    )
    vocab_note = (
        f" (target {cfg.vocab_size}: the synthetic corpus has no more pairs with frequency >= 2)"
        if report.vocab_size < cfg.vocab_size
        else ""
    )
    lora_md = (
        f"- LoRA sanity check ({lc['lora']}, {lc['steps']} steps x batch {lc['batch_size']}, lr {lc['lr']}) on "
        f"`{lc['client']}` ({lc['train_records']} train / {lc['heldout_records']} held-out records): held-out loss "
        f"{lc['loss_before']:.3f} -> {lc['loss_after']:.3f} (perplexity {lc['perplexity_before']:.1f} -> {lc['perplexity_after']:.1f})"
        if lc
        else "- LoRA sanity check: not run"
    )
    md = f"""# fedpriv default model

A small Llama-architecture causal LM + byte-level BPE tokenizer, pretrained on the synthetic
*public* corpus (generic medical notes + neutral messages, `simulations.synthetic.public_split`).
It is the starting point that clients personalize with DP-LoRA. Built fully offline on CPU.

## Rebuild

```bash
{report.command}
```

(equivalently `python -m simulations.studies.default_model` with the same options;
output is deterministic for a given seed, step count and thread count).

## Result

| held-out split of the public corpus | loss (nats/token) | perplexity |
|---|---|---|
| random init (same config, seed {cfg.seed}) | {report.random_init_loss:.3f} | {report.random_init_perplexity:.1f} |
| pretrained ({cfg.steps} steps) | {report.pretrained_loss:.3f} | {report.pretrained_perplexity:.2f} |

## Details

- seed: {cfg.seed}; threads: {cfg.threads}
- corpus: `public_split(num_records={cfg.public_records}, seed={cfg.seed}, heldout_fraction={cfg.heldout_fraction})`
  -> {report.train_records} train records (+{report.chat_docs} chat-template docs), {report.heldout_records} held-out records;
  {report.train_tokens} train tokens ({report.train_blocks} packed blocks of {cfg.seq_len}), {report.heldout_tokens} held-out tokens
- tokenizer: byte-level BPE, vocab {report.vocab_size}{vocab_note}, specials `<s> </s> <pad> <unk>`, no BOS/EOS added
  automatically (`decode(encode(x)) == x` for any UTF-8); chat template `<s><|role|>\\ncontent</s>\\n`...
- model: LlamaForCausalLM, hidden {cfg.hidden_size}, {cfg.num_layers} layers, {cfg.num_heads} heads,
  intermediate {cfg.intermediate_size}, max positions {cfg.max_position_embeddings}, tied embeddings, fp32;
  **{report.param_count:,} parameters**
- training: {cfg.steps} steps x batch {cfg.batch_size} x {cfg.seq_len} tokens ({report.epochs:.2f} epochs), AdamW
  (betas 0.9/0.95, wd {cfg.weight_decay}), lr {cfg.lr} -> {cfg.min_lr} cosine, {cfg.warmup_steps} warmup steps, clip {cfg.grad_clip};
  final train loss (EMA) {report.final_train_loss:.3f}
- smoothing: unigram word noising (Xie et al., 2017) of {cfg.noised_doc_fraction:.0%} of the training docs at rate {cfg.word_noise}
  (substitute or insert a corpus word); label smoothing {cfg.label_smoothing}. Without it, this template-generated corpus
  makes the model so overconfident that any off-template text (e.g. a client's own notes) scores worse than a random init
- build time (corpus -> saved model): {report.wall_seconds:.1f}s wall, {report.cpu_seconds:.1f}s CPU on {cfg.threads} threads
  (tokenizer {report.tokenizer_seconds:.1f}s, training {report.train_seconds:.1f}s); LoRA check afterwards {report.lora_check_seconds:.1f}s;
  1-min load average at start/end {load}{load_note}
- folder size: {size}
{lora_md}
- versions: {", ".join(f"{k} {v}" for k, v in report.versions.items())}

Load with `AutoModelForCausalLM.from_pretrained(path)` / `AutoTokenizer.from_pretrained(path)`.
"""
    (out / "BUILD.md").write_text(md, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    run(args)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = BuildConfig()
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="pretraining steps (default: %(default)s)")
    parser.add_argument(
        "--no-lora-check", dest="lora_check", action="store_false",
        help="skip the LoRA fine-tuning sanity check on one hospital client",
    )


def run(args: argparse.Namespace) -> BuildReport:
    from fedpriv.errors import ConfigError

    if args.steps < 1:
        raise ConfigError("steps", f"must be >= 1, got {args.steps}")
    cfg = BuildConfig(seed=args.seed, steps=args.steps)
    return build(args.out, cfg, lora_check=getattr(args, "lora_check", True))


if __name__ == "__main__":
    sys.exit(main())
