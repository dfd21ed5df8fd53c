"""Personalization on the device after the federation, with the ClientApp's training code and
privacy accounting.

The federated result, completed with what stays on the device (fedsa: its own lora_B), is
fine-tuned for `finetune_epochs` more local epochs (`finetune_locally`), paid from the device's
ledger of the federation: the accounting continues, and the fine-tuning is refused
(PrivacyBudgetExhausted) if it would push ε past `target_epsilon`. The device then predicts with a
mixture of the federated model and this private model (`client.interpolation`). Without
record-level DP the private model is the better on validation of the fine-tuned adapter and one
trained from scratch on the device (`personalize`).

Under `dp-scope uploads` (fedpriv.config.DP_SCOPES) record-level ε covers only what leaves the
device: the personalization never leaves it, so it trains as without DP (`RunConfig.on_device`),
and the ε reported with it is the federation's, which the fine-tuning leaves unchanged.

`personalize_device` runs this on one real device from what it kept in its own folder
(`client.device`): the last global adapter it received, the run config it came with, its ledger
and, for fedsa, its lora_B (`fedpriv personalize --device`). `personalize_split` and `summarize`
serve `fedpriv personalize RUN_DIR` (simulated runs) too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from client.device import (  # noqa: F401  (LEDGER_FILE, PRIVATE_FILE: the device's file names, for callers of this module)
    LEDGER_FILE,
    PERSONALIZED_FILE,
    PRIVATE_FILE,
    BaseModelCache,
    DeviceFolder,
    ReceivedGlobal,
    device_model,
    device_seed,
    devices_with_global,
)
from client.dp_training import encode, finetune_locally, mean_nll, perplexity_from_loss, token_log_probs
from client.interpolation import DEFAULT_GLOBAL_WEIGHT, check_weight, mixture_loss
from client.selection import EarlyStopped, choose_global_weight, selection_active, split_for_validation, train_with_early_stopping
from fedpriv.adapter_parts import ClientPlan, set_trainable_for_mode
from fedpriv.config import RunConfig
from fedpriv.data import ClientSplit, check_client_id, read_client_file, split_records
from fedpriv.errors import ConfigError, DataError
from fedpriv.files import write_atomically, write_tensors_atomically
from fedpriv.modeling import adapter_state, load_adapter_state, load_tokenizer

PERSONALIZABLE_MODES = ("fedavg", "ffa", "fedsa")  # hetlora: the server's global adapter is at another rank
RESULT_FILE = "personalization.json"
# The private side of the mixture: the federated adapter fine-tuned on the device, or (chosen on
# validation, without record-level DP only) an adapter the device trained from scratch on its own.
PRIVATE_MODELS = ("finetuned", "from_scratch")


@dataclass(frozen=True)
class Evaluated:
    loss: float
    perplexity: float
    epsilon: float | None = None  # record-level ε the device has spent for this model (None without DP)
    steps: int = 0  # DP-SGD steps in the device's ledger for this model (0 without DP)
    epochs: int = 0  # epochs of local training this model got on the device (after the federation, if any)


def total_local_epochs(config: RunConfig) -> int:
    """Epochs of local training a federated client does over the whole run (rounds + fine-tuning)."""
    return config.rounds * config.local_epochs + config.finetune_epochs


# ---- reading what the federation left on the server (the device's own files: client.device) ----


def load_global_adapter(adapter_dir: Path) -> dict[str, torch.Tensor]:
    """The global adapter tensors saved by the server (peft `save_pretrained` layout)."""
    from safetensors.torch import load_file

    return dict(load_file(str(Path(adapter_dir) / "adapter_model.safetensors")))


# ---- training on the device after the federation ----------------------------------------------


def train_from_scratch_selected(
    models: BaseModelCache, config: RunConfig, client_id: str, fit: TensorDataset, validation: TensorDataset
) -> tuple[Any, EarlyStopped]:
    """Without record-level DP: a fresh adapter (A and B) trained on `fit` only, early-stopped on
    `validation`. The local-only baseline, and the personalization's second private candidate (the
    same seed, so the same model: personalized then differs from local-only only by the federation)."""
    model = models.lora_model(config)
    set_trainable_for_mode(model, "fedavg")  # a plain LoRA: A and B trained
    stopped = train_with_early_stopping(model, fit, validation, config, device_seed(config, client_id, "local-only"), total_local_epochs(config))
    return model, stopped


def validation_split(config: RunConfig, client_id: str, train_set: TensorDataset) -> tuple[TensorDataset, TensorDataset]:
    """The device's (fit, validation) slices: the same for local-only and the fine-tuning."""
    return split_for_validation(train_set, config.validation_fraction, device_seed(config, client_id, "validation"))


@dataclass(frozen=True)
class Personalization:
    """One device's personalization, each evaluated on its held-out split."""

    federated: Evaluated  # the global adapter + what the device kept (fedsa: its own lora_B)
    finetuned: Evaluated  # ... then `finetune_epochs` epochs on the device
    interpolated: Evaluated  # mixture λ·federated + (1 − λ)·private model (client.interpolation); no extra ε
    global_weight: float  # λ
    selected_on_validation: bool = False  # epochs, λ and private model chosen on a validation slice (no record-level DP)
    private_model: str = "finetuned"  # PRIVATE_MODELS: what the mixture's private side is


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
    global_weight: float | None = None,
    save_adapter: Path | None = None,
    from_scratch: EarlyStopped | None = None,
    plan: ClientPlan | None = None,
    device_key: Path | None = None,
) -> Personalization:
    """Federated + private part, then fine-tuned, then the two interpolated, for one device.

    The device's files (`device_dir`: its ledger and, for fedsa, its sealed lora_B, opened with
    `device_key`, default the folder's own) are read through `client.device.DeviceFolder` and the
    model is built by `client.device.device_model` from `global_state` and `plan` (default: the
    strategy `mode` with nothing to rebuild, as for a run's saved global adapter), exactly as the
    ClientApp does in the federation.

    The fine-tuning trains what the device trained in the federation (ffa: B with the shared A
    frozen; fedavg / fedsa: A and B), for `config.finetune_epochs` epochs, continuing the device's
    ledger (written back when `save_ledger`). Without fine-tuning epochs all three are the same.
    The interpolation mixes the two models' predictions with the weight `global_weight` (None: the
    default λ): post-processing of what was already trained, so it spends nothing from the ledger.
    Without record-level DP (`client.selection`), the fine-tuning instead runs up to
    `total_local_epochs(config)` epochs on the train split minus a validation slice and keeps its
    best epoch there; the device also trains an adapter from scratch the same way (the local-only
    model), the one of the two with the lower validation loss becomes the private side of the
    mixture, and λ (unless given) is the grid value best on the same slice. This is Mansour et al.'s
    model interpolation with the better private model: where the federation's start hurts a device
    (negative transfer), the global model still enters through the mixture.
    `spent_before`: the ε the federation already reported for this ledger (saves recomputing it).
    `save_adapter`: write the mixture's private adapter (all its tensors) there, on the device.
    `from_scratch`: the outcome `train_from_scratch_selected` already gave for this device and config
    without record-level DP (the same model), so it is not trained a second time.
    Under `dp-scope uploads` all of this runs as without DP (`RunConfig.on_device`): it never leaves
    the device; the ledger is read for the ε the federation spent and left as it is."""
    if global_weight is not None:
        check_weight(global_weight)
    folder = DeviceFolder(Path(device_dir), device_key)
    private = folder.load_private() if mode == "fedsa" else None
    if mode == "fedsa" and private is None:
        raise DataError(f"{folder.path / PRIVATE_FILE}: a fedsa device must hold its own lora_B")
    # A DP run that left no ledger is an error: fine-tuning must not start from ε = 0.
    ledger = folder.load_ledger(config.accountant, required=True) if config.record_dp else None
    model = device_model(models, config, plan or ClientPlan(mode=mode), global_state, private)
    spent = None if ledger is None else (spent_before if spent_before is not None else ledger.epsilon(config.delta))
    steps = ledger.steps if ledger is not None else 0
    federated_log_probs = token_log_probs(model, held_out)
    federated = _evaluated(federated_log_probs, spent, steps)
    weight = DEFAULT_GLOBAL_WEIGHT if global_weight is None else global_weight
    if config.finetune_epochs <= 0:
        return Personalization(federated, federated, federated, weight)
    set_trainable_for_mode(model, mode)
    trainer = config.on_device()  # the fine-tuning's privacy: the run's, or none under dp-scope uploads
    charged = ledger if trainer.record_dp else None
    selecting = selection_active(trainer)
    private_model, private_name = model, "finetuned"
    if selecting:
        fit, validation = validation_split(trainer, client_id, train_set)
        stopped = train_with_early_stopping(model, fit, validation, trainer, device_seed(config, client_id, "finetune"), total_local_epochs(config))
        epochs = private_epochs = stopped.epochs
        scratch = from_scratch if from_scratch is not None else train_from_scratch_selected(models, trainer, client_id, fit, validation)[1]
        chosen = stopped
        if scratch.validation_loss < stopped.validation_loss:
            private_model, private_name, chosen, private_epochs = models.lora_model(config), "from_scratch", scratch, scratch.epochs
            load_adapter_state(private_model, scratch.state)
        if global_weight is None:
            weight = choose_global_weight(stopped.start_log_probs, chosen.log_probs)
    else:
        finetune_locally(model, train_set, trainer, charged, device_seed(config, client_id, "finetune"))
        epochs = private_epochs = config.finetune_epochs
    if charged is not None and save_ledger:
        folder.save_ledger(ledger)
    if save_adapter is not None:
        write_tensors_atomically(Path(save_adapter), adapter_state(private_model))
    finetuned_log_probs = token_log_probs(model, held_out)
    private_log_probs = finetuned_log_probs if private_model is model else token_log_probs(private_model, held_out)
    if charged is not None:  # the fine-tuning was paid from the ledger
        spent, steps = ledger.epsilon(config.delta), ledger.steps
    mixed = mixture_loss(federated_log_probs, private_log_probs, weight)
    return Personalization(
        federated, _evaluated(finetuned_log_probs, spent, steps, epochs),
        Evaluated(mixed, perplexity_from_loss(mixed), spent, steps, private_epochs), weight, selecting, private_name,
    )


def _evaluated(log_probs: torch.Tensor, epsilon: float | None, steps: int, epochs: int = 0) -> Evaluated:
    loss = mean_nll(log_probs)
    return Evaluated(loss, perplexity_from_loss(loss), epsilon, steps, epochs)


# ---- after the federation: `fedpriv personalize` (a simulated run's devices, or one real device) ----


def personalization_config(config: RunConfig, mode: str, finetune_epochs: int | None = None) -> RunConfig:
    """The run's config to personalize with (`finetune_epochs` overrides the run's; under DP the
    ledger still caps the budget). ConfigError if there is nothing to fine-tune or the mode can't be."""
    if finetune_epochs is not None:
        if finetune_epochs <= 0:
            raise ConfigError("finetune-epochs", f"must be at least 1 to personalize, got {finetune_epochs}")
        config = dataclasses.replace(config, finetune_epochs=finetune_epochs)
    if config.finetune_epochs <= 0:
        raise ConfigError("finetune-epochs", "the run reserved no fine-tuning epochs; pass --finetune-epochs N")
    if mode not in PERSONALIZABLE_MODES:
        raise ConfigError("strategy", f"personalization supports runs of {', '.join(PERSONALIZABLE_MODES)}, not {mode!r}")
    return config


def personalize_split(
    models: BaseModelCache, tokenizer, config: RunConfig, mode: str, split: ClientSplit,
    global_state: dict[str, torch.Tensor], device_dir: Path, global_weight: float | None,
    plan: ClientPlan | None = None, device_key: Path | None = None,
) -> dict[str, Any]:
    """`personalize` one device on its own split, keeping the mixture's private adapter in
    `device_dir` (PERSONALIZED_FILE); the device's row of the personalization summary."""
    adapter_path = Path(device_dir) / PERSONALIZED_FILE
    result = personalize(
        models, config, mode, split.client_id, global_state, Path(device_dir),
        encode(tokenizer, split.train, config.max_seq_len), encode(tokenizer, split.held_out, config.max_seq_len),
        global_weight=global_weight, save_adapter=adapter_path, plan=plan, device_key=device_key,
    )
    return {
        "federated_perplexity": result.federated.perplexity,
        "finetuned_perplexity": result.finetuned.perplexity,
        "personalized_perplexity": result.interpolated.perplexity,
        "epsilon": result.finetuned.epsilon,
        "dp_steps": result.finetuned.steps,
        "finetune_epochs": result.finetuned.epochs,
        "global_weight": result.global_weight,
        "selected_on_validation": result.selected_on_validation,
        "private_model": result.private_model,
        "adapter": str(adapter_path),
    }


def summarize(config: RunConfig, mode: str, global_weight: float | None, clients: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """What `fedpriv personalize` writes to personalization.json (and prints). `global_weight` None:
    λ was chosen per device (each client's row has its own); `finetune_epochs` is the run's setting,
    each row has the epochs the device kept."""
    return {"strategy": mode, "finetune_epochs": config.finetune_epochs, "global_weight": global_weight,
            "delta": config.delta if config.record_dp else None,
            "dp_scope": config.dp_scope if config.record_dp else None, **extra, "clients": clients}


def save_summary(folder: Path, summary: dict[str, Any]) -> Path:
    """Write the summary to `<folder>/personalization.json` atomically; returns its path."""
    path = Path(folder) / RESULT_FILE
    write_atomically(path, json.dumps(summary, indent=2))
    return path


def _device_to_personalize(state_dir: Path, client_id: str | None = None) -> str:
    """The client id under a real device's state dir: the given one, else the only one that kept a
    global adapter. DataError / ConfigError naming what is missing or ambiguous."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        raise DataError(f"{state_dir}: state directory not found (the SuperNode's node config state-dir)")
    if client_id:
        return check_client_id(client_id, "--client-id")
    found = devices_with_global(state_dir)
    if not found:
        raise DataError(f"{state_dir}: no global adapter persisted for any device; "
                        "run the federation first with state-dir set in the SuperNode's node config")
    if len(found) > 1:
        raise ConfigError("client-id", f"{state_dir} holds several devices ({', '.join(found)}); choose one with --client-id")
    return found[0]


def personalize_device(state_dir: Path, data_path: Path, client_id: str | None = None, finetune_epochs: int | None = None,
                       global_weight: float | None = None, device_key: Path | None = None) -> dict[str, Any]:
    """Personalize one real device after the federation from `<state_dir>/<client_id>/` (the last
    global adapter it received and its run config, its ledger, fedsa: its lora_B, the sealed ones
    opened with `device_key`, default the folder's own) and its data file, through the same
    `client.device` code the ClientApp used.

    The data is split exactly as the device split it in the federation (by client id and the run's
    seed), so the held-out part is still never trained on. Under record-level DP the fine-tuning is
    paid from the device's ledger and refused past `target_epsilon`; the ledger, the fine-tuned
    adapter and personalization.json are written to the device folder only after it succeeded."""
    client_id = _device_to_personalize(state_dir, client_id)
    device_dir = Path(state_dir) / client_id
    received = DeviceFolder(device_dir, device_key).load_received_global()
    data_path = Path(data_path)
    if not data_path.is_file():
        raise DataError(f"{data_path}: data file not found (the device's node config data-path)")
    plan = received.instruction.plan
    config = personalization_config(received.instruction.config, plan.mode, finetune_epochs)
    weight = None if global_weight is None else check_weight(global_weight)
    split = split_records(client_id, read_client_file(data_path), config.eval_fraction, config.seed)
    row = personalize_split(BaseModelCache(config.model), load_tokenizer(config.model), config, plan.mode, split,
                            received.state, device_dir, weight, plan, device_key)
    summary = summarize(config, plan.mode, weight, {client_id: row}, **_origin(received, config, data_path))
    save_summary(device_dir, summary)
    return summary


def _origin(received: ReceivedGlobal, config: RunConfig, data_path: Path) -> dict[str, Any]:
    return {"global_adapter": {"rounds_aggregated": received.rounds_aggregated, "rounds": config.rounds,
                               "server_round": received.instruction.server_round, "message_type": received.message_type,
                               "run_id": received.run_id},
            "target_epsilon": config.target_epsilon if config.record_dp else None, "data": str(data_path)}
