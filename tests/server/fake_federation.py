"""A grid whose nodes answer like fedpriv devices, without Flower's runtime or a model.

Every node is a client id. A train reply returns the arrays it was sent plus a small update drawn
from a generator seeded by (client id, round), with record-level-DP-shaped metrics whose ε grows
with the device's ledger of steps; an evaluate reply returns metrics computed from the arrays. So
the same federation answers the same way whatever node ids it runs under, and the ledgers (a
dict the test may share between two grids) continue across a "server restart" like a device's
`state-dir` does. `tamper(message, reply)` lets a test drop, replace or add replies.

Under secure aggregation (a train message with a "secagg" record) each node answers through the
device's own code, `client.secagg_app.secure_train`, with the same fake training, keeping its
protocol state in a Flower `Context` per node as a SuperNode does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from client.secagg_app import is_secure, secure_train
from strategies.base import decode_record, to_array_record
from tests.fakes import ensure_task_identity

Tamper = Callable[[Message, Message, str], list[Message]]


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little")


def client_record(client_id: str, server_round: int, profile: str = "hospital") -> ConfigRecord:
    return ConfigRecord({"client-id": client_id, "server-round": int(server_round), "profile": profile})


class FakeFederation:
    """The part of `flwr.serverapp.Grid` the server uses, answered by fake devices."""

    def __init__(
        self,
        client_ids: Sequence[str],
        *,
        node_seed: int = 0,
        ledgers: dict[str, int] | None = None,
        tamper: Tamper | None = None,
        profile: str = "hospital",
        reverse_arrivals: bool = False,
    ) -> None:
        ensure_task_identity()
        rng = np.random.default_rng(node_seed)
        node_ids = [int(n) for n in rng.choice(2**40, size=len(client_ids), replace=False) + 1]
        self.clients: dict[int, str] = dict(zip(node_ids, client_ids, strict=True))
        self.ledgers = ledgers if ledgers is not None else {}
        self.tamper = tamper
        self.profile = profile
        self.reverse_arrivals = reverse_arrivals  # replies arrive in any order on a real grid
        self.sent: list[Message] = []
        self.timeouts: list[float | None] = []
        self.contexts: dict[int, Context] = {}  # each node's Flower context (its secure-aggregation state)

    def node_of(self, client_id: str) -> int:
        return next(n for n, c in self.clients.items() if c == client_id)

    def get_node_ids(self) -> list[int]:
        return list(self.clients)

    def send_and_receive(self, messages, *, timeout: float | None = None) -> list[Message]:
        self.timeouts.append(timeout)
        replies: list[Message] = []
        for message in messages:
            self.sent.append(message)
            client_id = self.clients[message.metadata.dst_node_id]
            reply = self.answer(message, client_id)
            replies.extend(self.tamper(message, reply, client_id) if self.tamper else [reply])
        return replies[::-1] if self.reverse_arrivals else replies

    def context(self, node_id: int) -> Context:
        if node_id not in self.contexts:
            self.contexts[node_id] = Context(run_id=1, node_id=node_id, node_config={}, state=RecordDict(), run_config={})
        return self.contexts[node_id]

    def answer(self, message: Message, client_id: str) -> Message:
        if message.metadata.message_type == MessageType.TRAIN and is_secure(message):
            node = int(message.metadata.dst_node_id)
            return secure_train(message, self.context(node), lambda msg, _: self.trained(msg, client_id))
        if message.metadata.message_type == MessageType.TRAIN:
            return Message(self.trained(message, client_id), reply_to=message)
        server_round = int(message.content["config"]["server-round"])
        received = decode_record(message.content["arrays"])
        loss = 1.0 + float(np.mean([np.abs(v).mean() for v in received.values()])) + _seed(client_id) % 5 / 10
        metrics = {"eval_loss": loss, "eval_perplexity": float(np.exp(loss)), "num-examples": 4}
        content = {"metrics": MetricRecord(metrics), "client": client_record(client_id, server_round, self.profile)}
        return Message(RecordDict(content), reply_to=message)

    def trained(self, message: Message, client_id: str) -> RecordDict:
        """What the device's training returns: the arrays it was sent plus its seeded update."""
        server_round = int(message.content["config"]["server-round"])
        received = decode_record(message.content["arrays"])
        rng = np.random.default_rng(_seed(client_id, server_round))
        trained = {k: (v + rng.normal(0.0, 0.01, v.shape)).astype(v.dtype) for k, v in received.items()}
        steps = self.ledgers.get(client_id, 0) + 5
        self.ledgers[client_id] = steps
        metrics = {
            "train_loss": float(rng.uniform(1, 2)), "num-examples": 10 + _seed(client_id) % 7,
            "start_perplexity": float(rng.uniform(5, 9)), "epsilon": 0.3 * steps**0.5, "delta": 1e-5,
            "noise_multiplier": 1.1, "sample_rate": 0.1, "steps": steps, "round_steps": 5, "learning_rate": 1e-3,
        }
        return RecordDict({"arrays": to_array_record(trained), "metrics": MetricRecord(metrics),
                           "client": client_record(client_id, server_round, self.profile)})


def forged(message: Message, content: Mapping[str, object], src_node_id: int | None = None) -> Message:
    """A reply to `message` with any content, optionally claiming to come from another node."""
    reply = Message(RecordDict(dict(content)), reply_to=message)
    if src_node_id is not None:
        reply.metadata.__dict__["_src_node_id"] = int(src_node_id)
    return reply


def arrays_of(reply: Message) -> ArrayRecord:
    return reply.content["arrays"]
