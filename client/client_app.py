"""The fedpriv ClientApp: local DP-LoRA training and held-out evaluation on the device.

Only the LoRA tensors the strategy shares leave the device (all of them for fedavg/hetlora, B for
ffa, A for fedsa); the base model, the data and any private adapter part never do. Under secure
aggregation (a train message with a ``"secagg"`` record) not even those: ``client/secagg_app.py``
runs the round's stages and sends the update only masked. Under DP a reply's metrics are only the
accounting and the dataset size (``client/replies.py``); what the device measured beyond that stays
in its own log.

A device that must not train (its budget would be exceeded, its ledger is gone, its key cannot open
what it kept, its data is malformed) answers with an error reply naming the reason, which the server
records, and logs it; it sends no update and the round goes on with the others.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from logging import WARNING

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.common.logger import log

from client.device import BaseModelCache, Device, device_model, device_seed, open_device, read_instruction
from client.dp_training import encode, evaluate, held_out_bits_per_byte, train_locally
from client.replies import reply_content
from client.secagg_app import is_secure, secure_train
from fedpriv.adapter_parts import ClientPlan, set_trainable_for_mode, split_adapter
from fedpriv.config import RunConfig
from fedpriv.errors import FedprivError
from fedpriv.modeling import adapter_state, load_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline by default: never reach a model hub

app = ClientApp()
_MODELS: dict[str, BaseModelCache] = {}  # one base model per process (a simulation actor serves many rounds)


@dataclass
class Round:
    config: RunConfig
    plan: ClientPlan
    server_round: int
    device: Device
    tokenizer: object
    model: object


def _setup(msg: Message, context: Context) -> Round:
    instruction = read_instruction(msg.content["config"])
    config, plan = instruction.config, instruction.plan
    device = open_device(context, config)
    tokenizer = load_tokenizer(config.model)
    received = msg.content["arrays"].to_torch_state_dict()
    private = device.load_private_adapter(context) if plan.mode == "fedsa" else None
    models = _MODELS.setdefault(config.model, BaseModelCache(config.model))
    model = device_model(models, config, plan, received, private)  # at the rank the server asked for (hetlora sets lora-rank)
    # Kept (with a state dir) so the device can personalize after the federation; never sent.
    device.save_received_global(received, msg.content["config"], msg.metadata.message_type, context.run_id)
    set_trainable_for_mode(model, plan.mode)
    return Round(config, plan, instruction.server_round, device, tokenizer, model)


def _client_record(device: Device, server_round: int) -> ConfigRecord:
    return ConfigRecord({"client-id": device.client_id, "server-round": server_round, "profile": device.profile})


def _refusing(handler: Callable[[Message, Context], Message]) -> Callable[[Message, Context], Message]:
    """Turn a fedpriv error (a reason to refuse, not a bug) into an error reply with that reason."""

    @functools.wraps(handler)
    def handle(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except FedprivError as err:
            reason = f"fedpriv device refuses the {msg.metadata.message_type} instruction: {err}"
            log(WARNING, reason)
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=msg)

    return handle


@app.train()
@_refusing
def train(msg: Message, context: Context) -> Message:
    if is_secure(msg):
        return secure_train(msg, context, local_training)
    return Message(content=local_training(msg, context), reply_to=msg)


def local_training(msg: Message, context: Context) -> RecordDict:
    """Train on the device's records; the content of a plaintext train reply."""
    r = _setup(msg, context)
    train_set = encode(r.tokenizer, r.device.split.train, r.config.max_seq_len)
    held_out = encode(r.tokenizer, r.device.split.held_out, r.config.max_seq_len)
    _, start_perplexity = evaluate(r.model, held_out)

    ledger = r.device.load_ledger(context, r.config.accountant) if r.config.record_dp else None
    outcome = train_locally(r.model, train_set, r.config, ledger, seed=device_seed(r.config, r.device.client_id, str(r.server_round)))
    metrics: dict[str, float | int] = {
        "train_loss": outcome.train_loss,
        "num-examples": outcome.num_examples,
        "start_perplexity": start_perplexity,
        "sample_rate": outcome.sample_rate,
        "round_steps": outcome.round_steps,
        "learning_rate": outcome.learning_rate,  # AdamW's step (under DP: shrunk with σ, dp_learning_rate)
    }
    client = _client_record(r.device, r.server_round)
    if ledger is not None:
        r.device.save_ledger(context, ledger)
        metrics.update(
            {
                "epsilon": ledger.epsilon(r.config.delta),
                "delta": r.config.delta,
                "noise_multiplier": outcome.noise_multiplier,
                "steps": ledger.steps,  # cumulative DP-SGD steps over every round so far
            }
        )
        client["dp-noise-source"] = outcome.noise_source
    r.device.log_metrics("train", r.server_round, metrics)  # everything measured; the reply only what is covered
    shared, private = split_adapter(adapter_state(r.model), r.plan.mode)
    if r.plan.mode == "fedsa":
        r.device.save_private_adapter(context, private)
    # LoRA tensors the strategy shares, nothing else
    return reply_content(r.config, metrics, client, ArrayRecord(shared), secure=is_secure(msg))


@app.evaluate()
@_refusing
def evaluate_global(msg: Message, context: Context) -> Message:
    r = _setup(msg, context)
    texts = r.device.split.held_out
    held_out = encode(r.tokenizer, texts, r.config.max_seq_len)
    loss, perplexity = evaluate(r.model, held_out)
    metrics = {
        "eval_loss": loss,
        "eval_perplexity": perplexity,
        # per byte, not per token: comparable across base models with different tokenizers
        "eval_bits_per_byte": held_out_bits_per_byte(loss, held_out, r.tokenizer, texts, r.config.max_seq_len),
        "num-examples": len(texts),
    }
    r.device.log_metrics("evaluate", r.server_round, metrics)
    return Message(content=reply_content(r.config, metrics, _client_record(r.device, r.server_round)), reply_to=msg)
