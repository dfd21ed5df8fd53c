"""The fedpriv ClientApp: local DP-LoRA training and held-out evaluation on the device.

Only the trainable LoRA tensors leave the device; the base model and the data never do.
"""

from __future__ import annotations

import hashlib
import os

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.device import Device, open_device
from client.dp_training import encode, evaluate, train_locally
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, build_lora_model, load_adapter_state, load_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # offline by default: never reach a model hub

app = ClientApp()


def _setup(msg: Message, context: Context) -> tuple[RunConfig, Device, object, object]:
    # The server sends the whole run config with every instruction, so all devices train with the
    # same settings whichever way the federation was started.
    values = dict(msg.content["config"])
    values.pop("server-round", None)  # added by the strategy, not part of the run config
    config = RunConfig.from_flower(values)
    device = open_device(context, config)
    tokenizer = load_tokenizer(config.model)
    model = build_lora_model(config)
    load_adapter_state(model, msg.content["arrays"].to_torch_state_dict())
    return config, device, tokenizer, model


def _client_record(device: Device, msg: Message) -> ConfigRecord:
    return ConfigRecord({"client-id": device.client_id, "server-round": int(msg.content["config"]["server-round"])})


def _round_seed(config: RunConfig, client_id: str, server_round: int) -> int:
    digest = hashlib.sha256(f"{config.seed}:{client_id}:{server_round}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@app.train()
def train(msg: Message, context: Context) -> Message:
    config, device, tokenizer, model = _setup(msg, context)
    server_round = int(msg.content["config"]["server-round"])
    train_set = encode(tokenizer, device.split.train, config.max_seq_len)
    held_out = encode(tokenizer, device.split.held_out, config.max_seq_len)
    _, start_perplexity = evaluate(model, held_out)

    ledger = device.load_ledger(context, config.accountant) if config.dp else None
    outcome = train_locally(model, train_set, config, ledger, seed=_round_seed(config, device.client_id, server_round))
    metrics: dict[str, float | int] = {
        "train_loss": outcome.train_loss,
        "num-examples": outcome.num_examples,
        "start_perplexity": start_perplexity,
        "sample_rate": outcome.sample_rate,
        "round_steps": outcome.round_steps,
    }
    if ledger is not None:
        device.save_ledger(context, ledger)
        metrics.update(
            {
                "epsilon": ledger.epsilon(config.delta),
                "delta": config.delta,
                "noise_multiplier": outcome.noise_multiplier,
                "steps": ledger.steps,  # cumulative DP-SGD steps over every round so far
            }
        )
    content = RecordDict(
        {
            "arrays": ArrayRecord(adapter_state(model)),  # trainable LoRA tensors only
            "metrics": MetricRecord(metrics),
            "client": _client_record(device, msg),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_global(msg: Message, context: Context) -> Message:
    config, device, tokenizer, model = _setup(msg, context)
    loss, perplexity = evaluate(model, encode(tokenizer, device.split.held_out, config.max_seq_len))
    metrics = MetricRecord({"eval_loss": loss, "eval_perplexity": perplexity, "num-examples": len(device.split.held_out)})
    content = RecordDict({"metrics": metrics, "client": _client_record(device, msg)})
    return Message(content=content, reply_to=msg)
