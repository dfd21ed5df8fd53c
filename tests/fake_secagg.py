"""An in-memory SecAgg+ federation: clients answering a ``SecAggServer`` through plain dicts, with
dropouts, tampering and injected messages on demand, and a scanner that looks for any client's
plaintext update in whatever an object holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from flwr.app import Array

from client.secagg import SecAggClient
from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.messages import STAGES, Fields
from fedpriv.secagg.protocol import unpack_vector
from fedpriv.secagg.quantization import QuantizationSpec, quantize
from strategies.secagg import Reply, SecAggServer

Tamper = Callable[[str, int, Fields], Fields]


def node_ids(n: int, seed: int = 0) -> list[int]:
    """n distinct Flower-like node ids spread over the whole uint64 range."""
    rng = np.random.default_rng(seed)
    ids: set[int] = set()
    while len(ids) < n:
        ids.add(int(rng.integers(1, 2**64 - 1, dtype=np.uint64)))
    return sorted(ids)


class FakeSecAggFederation:
    """Clients keyed by node id. Each message restores the client from its exported state and saves
    it back, as the ClientApp will with ``context.state``.

    * ``drop_at[stage]``: nodes that never answer that stage (nor any later one);
    * ``tamper_request`` / ``tamper_reply``: edit a request before the client sees it, or a reply
      before the server does;
    * ``inject[stage]``: extra replies (replays, outsiders) delivered with the real ones.
    """

    def __init__(self, updates: Mapping[int, np.ndarray], weights: Mapping[int, int], seed: int = 0) -> None:
        self.updates = {int(k): np.asarray(v, dtype=np.float64) for k, v in updates.items()}
        self.weights = {int(k): int(v) for k, v in weights.items()}
        self.states: dict[int, Fields] = {i: {} for i in self.updates}
        self.rngs = {i: np.random.default_rng([seed, n]) for n, i in enumerate(sorted(self.updates))}
        self.drop_at: dict[str, set[int]] = {}
        self.tamper_request: Tamper | None = None
        self.tamper_reply: Tamper | None = None
        self.inject: dict[str, list[Reply]] = {}
        self.requests: dict[str, dict[int, Fields]] = {}
        self.replies: dict[str, dict[int, Fields]] = {}
        self.refusals: list[tuple[str, int, str]] = []

    def gone(self, stage: str) -> set[int]:
        """Nodes that have dropped by ``stage`` (dropouts of earlier stages stay gone)."""
        return set().union(*(self.drop_at.get(s, set()) for s in STAGES[: STAGES.index(stage) + 1]))

    def client(self, node_id: int) -> SecAggClient:
        return SecAggClient.restore(node_id, self.states[node_id], self.rngs[node_id])

    def answer(self, stage: str, node_id: int, fields: Fields) -> Fields | None:
        client = self.client(node_id)
        try:
            reply = client.handle(fields, lambda: (self.updates[node_id], self.weights[node_id]))
        except ProtocolError as err:
            self.refusals.append((stage, node_id, err.reason))
            return None
        self.states[node_id] = client.export()
        return reply

    def exchange(self, stage: str, requests: dict[int, Fields]) -> list[Reply]:
        self.requests[stage] = requests
        self.replies[stage] = {}
        out: list[Reply] = []
        for node_id, fields in requests.items():
            if node_id in self.gone(stage):
                continue
            if self.tamper_request is not None:
                fields = self.tamper_request(stage, node_id, dict(fields))
            reply = self.answer(stage, node_id, fields)
            if reply is None:
                continue
            if self.tamper_reply is not None:
                reply = self.tamper_reply(stage, node_id, dict(reply))
            self.replies[stage][node_id] = reply
            out.append((node_id, reply))
        return out + list(self.inject.get(stage, []))

    def run(self, server: SecAggServer):
        return server.run(self.exchange)

    def run_until(self, server: SecAggServer, stage: str) -> dict[int, Any]:
        """Run the stages before ``stage`` through this federation; return ``stage``'s requests
        (typed), not yet delivered."""
        for name, requests, receive in server.stages():
            if name == stage:
                return dict(requests())
            receive(self.exchange(name, {node: r.to_fields() for node, r in requests().items()}))
        raise ValueError(f"unknown stage {stage!r}")

    def plaintext_sum(self, survivors: Iterable[int], spec: QuantizationSpec) -> tuple[np.ndarray, int]:
        """Σ w_i·clip(x_i) and Σ w_i over ``survivors``."""
        c = spec.clip_range
        nodes = list(survivors)
        total = sum(self.weights[i] * np.clip(self.updates[i], -c, c) for i in nodes)
        return np.asarray(total, dtype=np.float64), sum(self.weights[i] for i in nodes)


def plaintext_forms(update: np.ndarray, weight: int, spec: QuantizationSpec) -> tuple[list[np.ndarray], np.ndarray]:
    """The forms one client's unmasked update could take on the server: floats (raw, clipped,
    weighted, dequantized) and the integer vector (w·q, w) it masks, rounded to nearest (a
    stochastically rounded one differs from it by at most w per entry)."""
    c = spec.clip_range
    clipped = np.clip(update, -c, c)
    integer = quantize(update, weight, dataclasses.replace(spec, rounding="deterministic"))
    floats = [update, clipped, weight * update, weight * clipped, integer[:-1].astype(np.float64) * spec.step - c * weight]
    return floats, integer


def held_values(obj: Any, seen: set[int] | None = None) -> Iterable[np.ndarray | bytes]:
    """Every array and bytes value reachable from ``obj`` (attributes, containers, dataclasses,
    Flower records and arrays). Objects whose id is in ``seen`` are skipped."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, Array):  # a Flower array: its serialized bytes decoded
        yield obj.numpy()
    elif isinstance(obj, bytes | bytearray):
        yield bytes(obj)
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from held_values(key, seen)
            yield from held_values(value, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for value in obj:
            yield from held_values(value, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield from held_values(vars(obj), seen)


def find_plaintext(obj: Any, updates: Mapping[int, np.ndarray], weights: Mapping[int, int], spec: QuantizationSpec) -> list[str]:
    """Descriptions of every value held by ``obj`` that is some client's plaintext update: a float
    array within twice the quantization error of one of its float forms, or an integer array (or
    packed bytes) within one level per entry of its quantized vector."""
    forms = {i: plaintext_forms(u, weights[i], spec) for i, u in updates.items()}
    width = spec.bytes_per_coordinate
    found: list[str] = []
    for value in held_values(obj):
        for node, (floats, integer) in forms.items():
            weight = max(weights[node], 1)
            candidate = value
            if isinstance(value, bytes):
                if len(value) != integer.size * width:
                    continue
                candidate = unpack_vector(value, integer.size, spec.modulus_bits)
            flat = candidate.ravel()
            if flat.dtype.kind in "ui":
                if flat.shape == integer.shape and np.abs(flat.astype(np.int64) - integer.astype(np.int64)).max() <= weight:
                    found.append(f"integers matching node {node}'s quantized input")
            elif flat.dtype.kind == "f":
                tolerance = 2 * spec.step * weight
                if any(flat.shape == f.shape and np.allclose(flat, f, rtol=0, atol=tolerance) for f in floats):
                    found.append(f"floats within quantization error of node {node}'s update")
    return found
