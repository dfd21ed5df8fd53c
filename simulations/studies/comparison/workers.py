"""The device-side work of a comparison (global-only evaluation, local-only training, personalization),
run in a pool of `--workers` processes with one torch thread each: on a small model that uses the
cores better than one process with several threads, and does not thrash when the machine is shared.

Each process holds one `DeviceSide` (the base model, loaded once, and the tokenizer), set up by the
pool's initializer (`init_worker`); the tasks below read it with `current()`. `install` sets it in
the calling process, for work done in-process (tests, a pool that runs tasks inline)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpriv.config import RunConfig
from fedpriv.data import ClientSplit


@dataclass
class DeviceSide:
    """What one process needs for the device-side tasks."""

    models: Any  # client.personalize.BaseModelCache
    tokenizer: Any

    def encode(self, texts: list[str], config: RunConfig) -> Any:
        from client.dp_training import encode

        return encode(self.tokenizer, texts, config.max_seq_len)


_current: DeviceSide | None = None  # this process's; set by init_worker or install


def install(side: DeviceSide | None) -> DeviceSide | None:
    """Make `side` this process's device side; returns the one it replaces (to restore it)."""
    global _current
    previous, _current = _current, side
    return previous


def current() -> DeviceSide:
    """This process's device side (RuntimeError outside a worker, unless one was installed)."""
    if _current is None:
        raise RuntimeError("no device side in this process: run the task in a pool made by make_pool, or install() one")
    return _current


def init_worker(model: str, threads: int) -> None:
    """The pool's initializer: `threads` torch threads, the base model and tokenizer of `model`."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(threads)
    from client.personalize import BaseModelCache
    from fedpriv.modeling import load_tokenizer

    install(DeviceSide(BaseModelCache(model), load_tokenizer(model)))


def make_pool(model: str, workers: int):
    """`workers` spawned processes with one torch thread each, every one holding `model`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker, initargs=(model, 1))


def audit_spent(config: RunConfig, what: str, epsilon: float | None) -> None:
    """After the fact: a device's measured record-level ε must not exceed the target it was run with
    (`check_budget` refuses beforehand; this catches a calibration or accounting slip in the results)."""
    target = config.target_epsilon if config.record_dp else None
    if target and epsilon is not None and epsilon > target + 1e-9:
        raise RuntimeError(f"{what} spent ε={epsilon} > {target}")


def task_base(config: RunConfig, client: ClientSplit) -> float:
    """The base model's held-out perplexity on one client."""
    from simulations.studies.baselines import evaluate_adapter

    side = current()
    return evaluate_adapter(side.models, config, {}, side.encode(client.held_out, config)).perplexity


def task_local_only(config: RunConfig, client: ClientSplit) -> tuple[dict[str, Any], Any]:
    """The client's local-only row, and (without record-level DP) its early-stopped outcome, which the
    personalization reuses as its from-scratch candidate instead of training the same model again."""
    from client.selection import EarlyStopped
    from simulations.studies.baselines import train_local_only

    side = current()
    started = time.perf_counter()
    result, _, outcome = train_local_only(side.models, config, client.client_id, side.encode(client.train, config), side.encode(client.held_out, config))
    audit_spent(config, f"local-only {client.client_id}", result.epsilon)
    row = {
        "perplexity": result.perplexity,
        "loss": result.loss,
        "epsilon": result.epsilon,
        "dp_steps": result.steps,
        "epochs": result.epochs,
        # early-stopped (no DP, client.selection): its validation loss; else the training outcome
        "noise_multiplier": 0.0 if isinstance(outcome, EarlyStopped) else outcome.noise_multiplier,
        "train_loss": None if isinstance(outcome, EarlyStopped) else outcome.train_loss,
        "validation_loss": outcome.validation_loss if isinstance(outcome, EarlyStopped) else None,
        "wall_time_s": time.perf_counter() - started,
    }
    return row, outcome if isinstance(outcome, EarlyStopped) else None


def task_personalize(config: RunConfig, strategy: str, client: ClientSplit, run_dir: str, spent: float | None, global_weight: float | None,
                     from_scratch: Any = None) -> dict[str, Any]:
    """One device after the federation in `run_dir`: its global-only perplexity and its personalization."""
    from client.personalize import load_global_adapter, personalize
    from simulations.studies.baselines import evaluate_adapter

    side = current()
    started = time.perf_counter()
    held_out = side.encode(client.held_out, config)
    global_state = load_global_adapter(Path(run_dir) / "adapters" / "final")
    global_only = evaluate_adapter(side.models, config, global_state, held_out)
    result = personalize(
        side.models, config, strategy, client.client_id, global_state, Path(run_dir) / "devices" / client.client_id,
        side.encode(client.train, config), held_out, spent_before=spent, global_weight=global_weight, from_scratch=from_scratch,
    )
    audit_spent(config, f"{strategy} {client.client_id}", result.finetuned.epsilon)
    return {
        "global_only": global_only.perplexity,
        "federated_with_private_part": result.federated.perplexity,
        "finetuned": result.finetuned.perplexity,
        "personalized": result.interpolated.perplexity,
        "global_weight": result.global_weight,
        "finetune_epochs": result.finetuned.epochs,
        "selected_on_validation": result.selected_on_validation,
        "private_model": result.private_model,
        "epsilon_after_federation": result.federated.epsilon,
        "epsilon_after_finetune": result.finetuned.epsilon,
        "dp_steps": result.finetuned.steps,
        "wall_time_s": time.perf_counter() - started,
    }
