"""The fedpriv ClientApp: local DP-LoRA training and held-out evaluation on the device.

Only the LoRA tensors the strategy shares leave the device (all of them for fedavg/hetlora, B for
ffa, A for fedsa); the base model, the data and any private adapter part never do. Under secure
aggregation (a train message with a ``"secagg"`` record) not even those: ``client/secagg_app.py``
runs the round's stages and sends the update only masked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.device import Device, device_seed, open_device, read_instruction
from client.dp_training import encode, evaluate, held_out_bits_per_byte, train_locally
from client.secagg_app import is_secure, secure_train
from fedpriv.adapter_parts import ClientPlan, apply_shared_lora_A, merge_adapter, set_trainable_for_mode, split_adapter
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, build_lora_model, load_adapter_state, load_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline by default: never reach a model hub

app = ClientApp()


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
    model = build_lora_model(config)  # at the rank the server asked for (hetlora sets lora-rank)
    received = msg.content["arrays"].to_torch_state_dict()
    load_adapter_state(model, _full_adapter(received, context, device, plan, adapter_state(model)))
    # Kept (with a state dir) so the device can personalize after the federation; never sent.
    device.save_received_global(received, msg.content["config"], msg.metadata.message_type, context.run_id)
    set_trainable_for_mode(model, plan.mode)
    return Round(config, plan, instruction.server_round, device, tokenizer, model)


def _full_adapter(received: dict, context: Context, device: Device, plan: ClientPlan, fresh: dict) -> dict:
    """Complete the adapter from what the server sent and what stays on this device."""
    if plan.mode == "ffa" and plan.a_seed is not None:
        # A is frozen at the shared seeded init: rebuilt here, never downloaded or uploaded.
        return apply_shared_lora_A({**fresh, **received}, plan.a_seed, plan.a_init)
    if plan.mode == "fedsa":
        # B is this device's private part: its own from earlier rounds, else the fresh (zero) init.
        private = device.load_private_adapter(context) or split_adapter(fresh, "fedsa")[1]
        return merge_adapter(private, received)
    return received


def _client_record(device: Device, server_round: int) -> ConfigRecord:
    return ConfigRecord({"client-id": device.client_id, "server-round": server_round, "profile": device.profile})


@app.train()
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
    shared, private = split_adapter(adapter_state(r.model), r.plan.mode)
    if r.plan.mode == "fedsa":
        r.device.save_private_adapter(context, private)
    return RecordDict(
        {
            "arrays": ArrayRecord(shared),  # LoRA tensors the strategy shares, nothing else
            "metrics": MetricRecord(metrics),
            "client": _client_record(r.device, r.server_round),
        }
    )


@app.evaluate()
def evaluate_global(msg: Message, context: Context) -> Message:
    r = _setup(msg, context)
    texts = r.device.split.held_out
    held_out = encode(r.tokenizer, texts, r.config.max_seq_len)
    loss, perplexity = evaluate(r.model, held_out)
    metrics = MetricRecord({
        "eval_loss": loss,
        "eval_perplexity": perplexity,
        # per byte, not per token: comparable across base models with different tokenizers
        "eval_bits_per_byte": held_out_bits_per_byte(loss, held_out, r.tokenizer, texts, r.config.max_seq_len),
        "num-examples": len(texts),
    })
    content = RecordDict({"metrics": metrics, "client": _client_record(r.device, r.server_round)})
    return Message(content=content, reply_to=msg)
