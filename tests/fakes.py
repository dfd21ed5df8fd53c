"""Helpers to drive strategies without Flower's runtime (tests, notebooks): a fake grid, a
synthetic peft-style adapter, and reply construction with ``Message(content, reply_to=...)``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedpriv.adapter_parts import lora_role, partner_key
from strategies.base import decode_record, to_array_record

# Strategy options for tests: a round may run with a single node; seeded sampling.
ONE_NODE: dict[str, int] = {"min_train_nodes": 1, "min_available_nodes": 1, "min_evaluate_nodes": 1, "seed": 0}


def ensure_task_identity(run_id: int = 1, node_id: int = 1, task_id: int = 1) -> None:
    """Message() reads the run/node/task identity Flower sets in a real ServerApp process."""
    if TaskIdentity._run_id is None:  # pylint: disable=protected-access
        TaskIdentity.run_id = run_id
    if TaskIdentity._node_id is None:  # pylint: disable=protected-access
        TaskIdentity.node_id = node_id
    if TaskIdentity._task_id is None:  # pylint: disable=protected-access
        TaskIdentity.task_id = task_id


class FakeGrid:
    """The part of ``flwr.serverapp.Grid`` the strategies use when configuring a round."""

    def __init__(self, node_ids: Iterable[int]) -> None:
        self.node_ids = [int(n) for n in node_ids]

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)


def make_adapter(
    rank: int = 4,
    modules: Iterable[str] = ("q_proj", "v_proj"),
    layers: int = 2,
    dim_in: int = 12,
    dim_out: int = 10,
    seed: int = 0,
    zero_b: bool = False,
) -> dict[str, np.ndarray]:
    """A peft-style adapter state dict (float32) with keys like
    ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for layer in range(layers):
        for module in modules:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            out[f"{prefix}.lora_A.weight"] = rng.normal(0, 0.1, (rank, dim_in)).astype(np.float32)
            b = np.zeros((dim_out, rank)) if zero_b else rng.normal(0, 0.1, (dim_out, rank))
            out[f"{prefix}.lora_B.weight"] = b.astype(np.float32)
    return out


def instruction_arrays(msg: Message) -> dict[str, np.ndarray]:
    return decode_record(msg.content["arrays"])


def configure_by_node(
    strategy: Any,
    nodes: Iterable[int],
    arrays: Mapping[str, np.ndarray],
    server_round: int = 1,
    config: Mapping[str, Any] | None = None,
) -> dict[int, Message]:
    """The train instructions of one round over ``nodes``, keyed by destination node."""
    msgs = strategy.configure_train(server_round, to_array_record(arrays), ConfigRecord(dict(config or {})), FakeGrid(nodes))
    return {m.metadata.dst_node_id: m for m in msgs}


def perturbed(arrays: Mapping[str, np.ndarray], seed: int, scale: float = 0.05) -> dict[str, np.ndarray]:
    """``arrays`` plus seeded Gaussian noise of std ``scale`` (a stand-in for local training), float32."""
    rng = np.random.default_rng(seed)
    return {k: (v + rng.normal(0, scale, v.shape)).astype(np.float32) for k, v in arrays.items()}


def lora_pairs(arrays: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
    """(A key, B key) of every LoRA module in an adapter."""
    return [(k, partner_key(k)) for k in arrays if lora_role(k) == "A"]


def default_metrics(num_examples: int | float = 10, **extra: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "train_loss": 1.0,
        "num-examples": num_examples,
        "epsilon": 1.0,
        "delta": 1e-5,
        "noise_multiplier": 1.0,
        "sample_rate": 0.1,
        "steps": 5,
    }
    metrics.update(extra)
    return metrics


def make_reply(
    instruction: Message,
    arrays: Mapping[str, np.ndarray] | ArrayRecord | None,
    *,
    num_examples: int | float = 10,
    server_round: int | None = None,
    client_id: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    client_extra: Mapping[str, Any] | None = None,
    drop: Iterable[str] = (),
) -> Message:
    """A train reply to ``instruction`` (src_node_id = the instruction's dst_node_id)."""
    if server_round is None:
        server_round = int(instruction.content["config"]["server-round"])
    node = instruction.metadata.dst_node_id
    client = {"client-id": client_id or f"client-{node}", "server-round": int(server_round)}
    client.update(client_extra or {})
    content: dict[str, Any] = {
        "metrics": MetricRecord(dict(metrics) if metrics is not None else default_metrics(num_examples)),
        "client": ConfigRecord(client),
    }
    if arrays is not None:
        content["arrays"] = arrays if isinstance(arrays, ArrayRecord) else to_array_record(arrays)
    for key in drop:
        content.pop(key, None)
    return Message(RecordDict(content), reply_to=instruction)


def encoded_client(profile: str, records: int, held_out: float, seed: int, max_seq_len: int = 24) -> tuple[str, Any, Any]:
    """One synthetic client of `profile`: its id and its (train, held-out) token datasets, split as
    its device splits them (`split_records`, seed 0) and encoded with the default model's tokenizer."""
    from client.dp_training import encode
    from fedpriv.data import split_records
    from fedpriv.modeling import load_tokenizer
    from simulations.synthetic import generate_federation

    client_id, texts = next(iter(generate_federation(profile, 1, records, seed=seed).items()))
    split = split_records(client_id, texts, held_out, 0)
    tokenizer = load_tokenizer("default")
    return client_id, encode(tokenizer, split.train, max_seq_len), encode(tokenizer, split.held_out, max_seq_len)
