"""Device-side personalization and its two baselines, with the same training code and privacy
accounting as the ClientApp (used by `simulations.compare_strategies`).

* **global-only**: the federation's final global adapter, nothing of the device's own added.
* **local-only**: no federation; the device trains its own adapter on its own train split for the
  same total number of local epochs as a federated client (`rounds * local_epochs + finetune_epochs`),
  with the same DP-SGD noise multiplier (calibrated by `noise_multiplier_for` for that many epochs),
  so it spends the same record-level budget `target_epsilon`.
* **personalized**: the federated result completed with what stays on the device (fedsa: its own
  lora_B) and fine-tuned for `finetune_epochs` more local epochs (`finetune_locally`), paid from the
  device's ledger of the federation: the accounting continues and `finetune_locally` refuses
  (PrivacyBudgetExhausted) if the fine-tuning would push ε past `target_epsilon`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from client.device import LEDGER_FILE, PRIVATE_FILE, device_seed
from client.dp_training import TrainOutcome, evaluate, finetune_locally, mean_nll, perplexity_from_loss, token_log_probs, train_locally
from client.interpolation import DEFAULT_GLOBAL_WEIGHT, check_weight, mixture_loss
from client.privacy_ledger import PrivacyLedger
from fedpriv.adapter_parts import apply_shared_lora_A, merge_adapter, set_trainable_for_mode, split_adapter
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, build_lora_model, load_adapter_state, load_base_model


@dataclass(frozen=True)
class Evaluated:
    loss: float
    perplexity: float
    epsilon: float | None = None  # record-level ε the device has spent for this model (None without DP)
    steps: int = 0  # DP-SGD steps in the device's ledger for this model (0 without DP)


def total_local_epochs(config: RunConfig) -> int:
    """Epochs of local training a federated client does over the whole run (rounds + fine-tuning)."""
    return config.rounds * config.local_epochs + config.finetune_epochs


class BaseModelCache:
    """Loads the base model once; hands out fresh LoRA models built on deep copies of it."""

    def __init__(self, model: str):
        self.name = model
        self._base: torch.nn.Module | None = None

    def lora_model(self, config: RunConfig):
        if self._base is None:
            self._base = load_base_model(self.name)
        return build_lora_model(config, copy.deepcopy(self._base))


# ---- reading what the federation left on the device and on the server ------------------------


def load_global_adapter(adapter_dir: Path) -> dict[str, torch.Tensor]:
    """The global adapter tensors saved by the server (peft `save_pretrained` layout)."""
    from safetensors.torch import load_file

    return dict(load_file(str(Path(adapter_dir) / "adapter_model.safetensors")))


def load_private_part(device_dir: Path) -> dict[str, torch.Tensor] | None:
    """What a fedsa device kept for itself (its lora_B), or None if it has nothing."""
    from safetensors.torch import load_file

    path = Path(device_dir) / PRIVATE_FILE
    return dict(load_file(str(path))) if path.is_file() else None


def load_device_ledger(device_dir: Path, config: RunConfig) -> PrivacyLedger | None:
    """The device's record-level ledger from the federation (None when record-level DP is off).
    A DP run that left no ledger is an error: fine-tuning must not start from ε = 0."""
    if not config.record_dp:
        return None
    path = Path(device_dir) / LEDGER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no privacy ledger from the federation; refusing to fine-tune with an unknown budget")
    return PrivacyLedger.load(path, config.accountant)


def complete_adapter(fresh: dict[str, torch.Tensor], global_state: dict[str, torch.Tensor], mode: str, private: dict[str, torch.Tensor] | None, config: RunConfig) -> dict[str, torch.Tensor]:
    """The full adapter a device holds after the federation: the global tensors, plus for fedsa its
    own private part (without it, B stays at its init, zero: the base model), for ffa the shared A
    rebuilt from the seed exactly as the ClientApp does."""
    state = merge_adapter(fresh, global_state)
    if mode == "ffa":
        state = apply_shared_lora_A(state, config.seed, "kaiming_uniform") if not any("lora_A" in k for k in global_state) else state
    if mode == "fedsa" and private is not None:
        state = merge_adapter(state, split_adapter(private, "fedsa")[1])
    return state


# ---- the three methods ------------------------------------------------------------------------


def evaluate_adapter(models: BaseModelCache, config: RunConfig, state: dict[str, torch.Tensor], held_out: TensorDataset) -> Evaluated:
    model = models.lora_model(config)
    load_adapter_state(model, merge_adapter(adapter_state(model), state))
    loss, perplexity = evaluate(model, held_out)
    return Evaluated(loss, perplexity)


def train_local_only(
    models: BaseModelCache, config: RunConfig, client_id: str, train_set: TensorDataset, held_out: TensorDataset
) -> tuple[Evaluated, PrivacyLedger | None, TrainOutcome]:
    """Local-only baseline: a fresh adapter, `total_local_epochs(config)` epochs on the device's own
    train split, with a fresh ledger and the federated client's σ; never more than `target_epsilon`."""
    model = models.lora_model(config)
    set_trainable_for_mode(model, "fedavg")  # a plain LoRA: A and B trained
    ledger = PrivacyLedger(accountant=config.accountant) if config.record_dp else None
    outcome = train_locally(model, train_set, config, ledger, device_seed(config, client_id, "local-only"), epochs=total_local_epochs(config))
    loss, perplexity = evaluate(model, held_out)
    epsilon = ledger.epsilon(config.delta) if ledger is not None else None
    return Evaluated(loss, perplexity, epsilon, outcome.round_steps), ledger, outcome


@dataclass(frozen=True)
class Personalization:
    """One device's personalization, each evaluated on its held-out split."""

    federated: Evaluated  # the global adapter + what the device kept (fedsa: its own lora_B)
    finetuned: Evaluated  # ... then `finetune_epochs` epochs on the device
    interpolated: Evaluated  # mixture λ·federated + (1 − λ)·finetuned (client.interpolation); no extra ε
    global_weight: float  # λ


def personalize(
    models: BaseModelCache,
    config: RunConfig,
    mode: str,
    client_id: str,
    global_state: dict[str, torch.Tensor],
    device_dir: Path,
    train_set: TensorDataset,
    held_out: TensorDataset,
    *,
    save_ledger: bool = True,
    spent_before: float | None = None,
    global_weight: float = DEFAULT_GLOBAL_WEIGHT,
    save_adapter: Path | None = None,
) -> Personalization:
    """Federated + private part, then fine-tuned, then the two interpolated, for one device.

    The fine-tuning trains what the device trained in the federation (ffa: B with the shared A
    frozen; fedavg / fedsa: A and B), for `config.finetune_epochs` epochs, continuing the device's
    ledger (written back when `save_ledger`). Without fine-tuning epochs all three are the same.
    The interpolation mixes the two models' predictions with the fixed weight `global_weight`:
    post-processing of what was already trained, so it spends nothing from the ledger.
    `spent_before`: the ε the federation already reported for this ledger (saves recomputing it).
    `save_adapter`: write the fine-tuned adapter (all its tensors) there, on the device."""
    check_weight(global_weight)
    private = load_private_part(device_dir) if mode == "fedsa" else None
    if mode == "fedsa" and private is None:
        raise FileNotFoundError(f"{device_dir / PRIVATE_FILE}: a fedsa device must hold its own lora_B")
    ledger = load_device_ledger(device_dir, config)
    model = models.lora_model(config)
    load_adapter_state(model, complete_adapter(adapter_state(model), global_state, mode, private, config))
    spent = None if ledger is None else (spent_before if spent_before is not None else ledger.epsilon(config.delta))
    steps = ledger.steps if ledger is not None else 0
    federated_log_probs = token_log_probs(model, held_out)
    federated = _evaluated(federated_log_probs, spent, steps)
    if config.finetune_epochs <= 0:
        return Personalization(federated, federated, federated, global_weight)
    set_trainable_for_mode(model, mode)
    finetune_locally(model, train_set, config, ledger, device_seed(config, client_id, "finetune"))
    if ledger is not None and save_ledger:
        ledger.save(Path(device_dir) / LEDGER_FILE)
    if save_adapter is not None:
        from safetensors.torch import save_file

        Path(save_adapter).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in adapter_state(model).items()}, str(save_adapter))
    finetuned_log_probs = token_log_probs(model, held_out)
    spent = ledger.epsilon(config.delta) if ledger is not None else None
    steps = ledger.steps if ledger is not None else 0
    mixed = mixture_loss(federated_log_probs, finetuned_log_probs, global_weight)
    return Personalization(
        federated, _evaluated(finetuned_log_probs, spent, steps), Evaluated(mixed, perplexity_from_loss(mixed), spent, steps), global_weight
    )


def _evaluated(log_probs: torch.Tensor, epsilon: float | None, steps: int) -> Evaluated:
    loss = mean_nll(log_probs)
    return Evaluated(loss, perplexity_from_loss(loss), epsilon, steps)
