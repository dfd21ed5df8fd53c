"""Local training of the LoRA adapter: DP-SGD with Opacus (Poisson sampling), or plain SGD with --no-dp.

Privacy unit: one record (one text sequence). Its loss is the mean over its own tokens, so clipping
bounds each record's gradient regardless of its length.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from client.privacy_ledger import PrivacyLedger
from fedpriv.config import DP_WALK_RADIUS, RunConfig
from fedpriv.data import clip_text
from fedpriv.errors import PrivacyBudgetExhausted

IGNORE = -100


@dataclass(frozen=True)
class TrainOutcome:
    train_loss: float
    num_examples: int
    round_steps: int
    noise_multiplier: float  # 0.0 without DP
    sample_rate: float
    learning_rate: float = 0.0  # AdamW's step size actually used (under DP: dp_learning_rate)


def encode(tokenizer, texts: list[str], max_seq_len: int) -> TensorDataset:
    """Fixed-length (padded) token tensors; padding is masked out of attention and of the loss. Each
    text is cut before tokenizing (`clip_text`): a huge record must not be tokenized whole."""
    batch = tokenizer([clip_text(t, max_seq_len) for t in texts], max_length=max_seq_len, truncation=True,
                      padding="max_length", return_tensors="pt")
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = IGNORE
    return TensorDataset(batch["input_ids"], batch["attention_mask"], labels)


def next_token_pairs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits at each position and the label of the token after it (position t predicts t + 1)."""
    return logits[:, :-1, :], labels[:, 1:]


def per_record_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of each record (shape [batch])."""
    logits, labels = next_token_pairs(logits, labels)
    batch, length, vocab = logits.shape
    token_loss = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), ignore_index=IGNORE, reduction="none")
    token_loss = token_loss.view(batch, length)
    valid = (labels != IGNORE).sum(dim=1).clamp(min=1)
    return token_loss.sum(dim=1) / valid


def sample_rate_for(num_records: int, batch_size: int) -> float:
    # Opacus' DPDataLoader uses q = 1 / len(loader) with len(loader) = ceil(N / B).
    return 1.0 / math.ceil(num_records / batch_size)


def steps_per_round(num_records: int, config: RunConfig) -> int:
    return config.local_epochs * math.ceil(num_records / config.batch_size)


def planned_dp_steps(config: RunConfig, num_records: int) -> int:
    """The DP-SGD steps a device's budget is calibrated for: all rounds plus the fine-tuning (local-only
    trains the same number of epochs, so the same steps). Under `dp-scope uploads` the fine-tuning
    runs without noise, so the rounds alone spend the budget."""
    private_epochs = config.rounds * config.local_epochs + (config.finetune_epochs if config.on_device_dp else 0)
    return private_epochs * math.ceil(num_records / config.batch_size)


def noise_multiplier_for(config: RunConfig, num_records: int) -> float:
    """The configured sigma, or the sigma that spends exactly `target_epsilon` over `planned_dp_steps`:
    all rounds plus (under `dp-scope all`) the local fine-tuning after them (assuming the client
    takes part in every round: a conservative choice when clients are sampled)."""
    if config.target_epsilon <= 0:
        return config.noise_multiplier
    return calibrated_noise_multiplier(
        config.target_epsilon, config.delta, sample_rate_for(num_records, config.batch_size), planned_dp_steps(config, num_records), config.accountant
    )


@functools.lru_cache(maxsize=256)
def calibrated_noise_multiplier(target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The sigma with which `steps` Poisson-sampled DP-SGD steps at `sample_rate` spend `target_epsilon`
    at `delta` under `accountant` (Opacus' search, which never returns a sigma that overspends).

    Cached on exactly these arguments: the search is deterministic, so a cached sigma is the one it
    would compute again, and it costs seconds per call, while a device asks for the same sigma in
    every round and again for its fine-tuning."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps, accountant=accountant))


def dp_learning_rate(config: RunConfig, sigma: float, planned_steps: int) -> float:
    """AdamW's step size for DP-SGD at noise multiplier `sigma` over `planned_steps` steps (`dp-step-size`).

    A LoRA adapter has tens of thousands of coordinates: the noise on each one (σ·C per batch)
    dwarfs its share of the batch's clipped gradients (≤ B·C in norm over all of them), and Adam
    divides by the running RMS of what it sees. Every coordinate then moves about one learning rate
    per step, mostly at random, while the signal's share of the move falls as 1/σ. The loss falls
    with the signal (∝ lr/σ) and rises with the random walk (∝ lr²), so the best step is ∝ 1/σ. Under
    DP nothing can stop early (a choice made on the data is not accounted for), so a step too large
    for the noise over-trains.

    - `fixed`: the configured learning rate at every step.
    - `inverse-sigma`: learning-rate × min(1, 1/σ); the configured rate applies up to σ = 1, a
      reference point set on a tuning federation, not derived.
    - `capped` (the default): `inverse-sigma`, with step·√T also kept within DP_WALK_RADIUS. The
      1/σ argument holds per step; over many steps the signal runs out near a minimum while the
      random walk keeps growing as step·√T, so a long private training needs the smaller step.

    What each rule does to the results is measured in the study reports (docs/studies/)."""
    if config.dp_step_size == "fixed":
        return config.learning_rate
    step = config.learning_rate / max(sigma, 1.0)
    if config.dp_step_size == "capped":
        step = min(step, DP_WALK_RADIUS / math.sqrt(max(planned_steps, 1)))
    return step


def check_budget(ledger: PrivacyLedger, config: RunConfig, num_records: int, sigma: float, epochs: int | None = None) -> None:
    """Refuse to start `epochs` of training whose steps would push epsilon past the budget (`target_epsilon`)."""
    if config.target_epsilon <= 0:
        return
    epochs = config.local_epochs if epochs is None else epochs
    planned = (sigma, sample_rate_for(num_records, config.batch_size), epochs * math.ceil(num_records / config.batch_size))
    after = ledger.epsilon(config.delta, extra=[planned])
    if after > config.target_epsilon + 1e-9:
        spent = ledger.epsilon(config.delta)
        raise PrivacyBudgetExhausted(
            f"privacy budget spent: epsilon so far {spent:.3f}, another round would reach {after:.3f} "
            f"> target-epsilon {config.target_epsilon} (delta={config.delta}); not training"
        )


def finetune_locally(model, dataset: TensorDataset, config: RunConfig, ledger: PrivacyLedger | None, seed: int) -> TrainOutcome:
    """Personalization after the last round: `finetune_epochs` more local epochs, never shared,
    paid from the same budget (sigma was calibrated for them)."""
    return train_locally(model, dataset, config, ledger, seed, epochs=config.finetune_epochs)


def train_locally(
    model, dataset: TensorDataset, config: RunConfig, ledger: PrivacyLedger | None, seed: int, epochs: int | None = None,
    after_epoch: Callable[[int], bool] | None = None,
) -> TrainOutcome:
    """One round of local training (`epochs`, default `local_epochs`). With DP, `ledger` is extended
    in place with the steps taken. Without DP, `after_epoch(epochs_done)` runs after every epoch and
    stops the training when it returns True (early stopping, `client.selection`); under DP it is
    refused, since looking at the data between epochs is not covered by the accounting."""
    epochs = config.local_epochs if epochs is None else epochs
    if config.record_dp:
        if after_epoch is not None:
            raise ValueError("a per-epoch callback (early stopping) is not allowed under record-level DP")
        if ledger is None:
            raise ValueError("DP training needs a privacy ledger")
        sigma = noise_multiplier_for(config, len(dataset))
        learning_rate = dp_learning_rate(config, sigma, planned_dp_steps(config, len(dataset)))
    else:
        learning_rate = config.learning_rate
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model.train()
    if not config.record_dp:
        return _train_plain(model, optimizer, loader, epochs, len(dataset), config.batch_size, after_epoch)
    return _train_private(model, optimizer, loader, config, ledger, len(dataset), epochs, sigma)


def _train_plain(
    model, optimizer, loader, epochs: int, num_records: int, batch_size: int, after_epoch: Callable[[int], bool] | None = None
) -> TrainOutcome:
    losses: list[float] = []
    steps = 0
    for epoch in range(1, epochs + 1):
        model.train()  # after_epoch may have evaluated (eval mode)
        for input_ids, attention_mask, labels in loader:
            optimizer.zero_grad()
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
            loss = per_record_loss(logits, labels).mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            steps += 1
        if after_epoch is not None and after_epoch(epoch):
            break
    return TrainOutcome(sum(losses) / len(losses), num_records, steps, 0.0, sample_rate_for(num_records, batch_size),
                        optimizer.param_groups[0]["lr"])


def _train_private(
    model, optimizer, loader, config: RunConfig, ledger: PrivacyLedger, num_records: int, epochs: int, sigma: float
) -> TrainOutcome:
    from opacus import PrivacyEngine

    check_budget(ledger, config, num_records, sigma, epochs)
    engine = PrivacyEngine(accountant=config.accountant)
    engine.accountant.history = list(ledger.history)  # continue, never restart, the accounting
    ghost = config.grad_sample_mode == "ghost"
    criterion = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    private = engine.make_private(
        module=model,
        optimizer=optimizer,
        criterion=criterion,
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=config.max_grad_norm,
        poisson_sampling=True,
        grad_sample_mode=config.grad_sample_mode,
    )
    if ghost:
        dp_model, dp_optimizer, dp_criterion, dp_loader = private
    else:
        dp_model, dp_optimizer, dp_loader = private
    losses: list[float] = []
    steps = 0
    try:
        for _ in range(epochs):
            for input_ids, attention_mask, labels in dp_loader:
                dp_optimizer.zero_grad()
                logits = dp_model(input_ids=input_ids, attention_mask=attention_mask).logits
                if ghost:
                    shift_logits, shift_labels = next_token_pairs(logits, labels)
                    loss = dp_criterion(
                        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), shape=shift_logits.shape[:2]
                    )
                    loss.backward()
                    value = float(loss.detach().item()) if hasattr(loss, "detach") else float(loss.loss_per_sample.mean())
                else:
                    loss = per_record_loss(logits, labels).mean()
                    loss.backward()
                    value = loss.item()
                dp_optimizer.step()
                if len(input_ids):
                    losses.append(value)
                steps += 1
    finally:
        dp_model._close()  # remove Opacus hooks from the (shared) peft model
    ledger.history = [tuple(s) for s in engine.accountant.history]
    mean_loss = sum(losses) / len(losses) if losses else float("nan")
    return TrainOutcome(mean_loss, num_records, steps, sigma, sample_rate_for(num_records, config.batch_size), optimizer.param_groups[0]["lr"])


@torch.no_grad()
def token_log_probs(model, dataset: TensorDataset, batch_size: int = 32) -> torch.Tensor:
    """Log-probability the model gives each real (non-padding) next token, flattened in dataset order."""
    model.eval()
    out: list[torch.Tensor] = []
    for input_ids, attention_mask, labels in DataLoader(dataset, batch_size=batch_size):
        logits, targets = next_token_pairs(model(input_ids=input_ids, attention_mask=attention_mask).logits, labels)
        mask = targets != IGNORE
        log_probs = F.log_softmax(logits.float(), dim=-1)
        picked = log_probs.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        out.append(picked[mask])
    return torch.cat(out) if out else torch.zeros(0)


def evaluate(model, dataset: TensorDataset, batch_size: int = 32) -> tuple[float, float]:
    """(mean token NLL, perplexity) over a held-out set, token-weighted (0 NLL if it has no tokens)."""
    log_probs = token_log_probs(model, dataset, batch_size)
    loss = mean_nll(log_probs) if log_probs.numel() else 0.0
    return loss, perplexity_from_loss(loss)


def mean_nll(log_probs: torch.Tensor) -> float:
    """Mean token NLL (nats) of per-token log-probabilities, token-weighted."""
    if log_probs.numel() == 0:
        raise ValueError("no tokens to evaluate on")
    return float(-log_probs.double().mean())


def target_token_count(dataset: TensorDataset) -> int:
    """How many tokens `evaluate` scores: every real token but the first of each record (nothing predicts it)."""
    labels = dataset.tensors[2]
    return int((labels[:, 1:] != IGNORE).sum())


def evaluated_text_bytes(tokenizer, texts: list[str], max_seq_len: int) -> int:
    """UTF-8 bytes of the text `evaluate` scores on `encode(tokenizer, texts, max_seq_len)`: each
    record from its second token to its last kept one (truncation included), located with the
    tokenizer's character offsets. The first token is given, not predicted, so its bytes do not count."""
    total = 0
    for text in (clip_text(t, max_seq_len) for t in texts):  # as `encode` cuts them: a prefix, so the same bytes
        offsets = tokenizer(text, max_length=max_seq_len, truncation=True, return_offsets_mapping=True)["offset_mapping"]
        spans = [(start, end) for start, end in offsets[1:] if end > start]  # special tokens have empty spans
        if spans:
            total += len(text[spans[0][0] : max(end for _, end in spans)].encode("utf-8"))
    return total


def bits_per_byte(total_nll: float, num_bytes: int) -> float:
    """Held-out loss in bits per UTF-8 byte, from the summed token NLL (nats) over those bytes.

    Unlike perplexity (per token) it does not depend on the tokenizer, so models with different
    vocabularies compare on the same text."""
    if num_bytes <= 0:
        raise ValueError("no evaluated bytes")
    return total_nll / (math.log(2) * num_bytes)


def held_out_bits_per_byte(mean_loss: float, dataset: TensorDataset, tokenizer, texts: list[str], max_seq_len: int) -> float:
    """`evaluate`'s mean token NLL on `dataset` (= encode(tokenizer, texts, max_seq_len)) in bits per byte."""
    return bits_per_byte(mean_loss * target_token_count(dataset), evaluated_text_bytes(tokenizer, texts, max_seq_len))


def perplexity_from_loss(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # capped: a diverged model reports e^50, not an overflow
