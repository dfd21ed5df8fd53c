"""Benchmark: one SecAgg+ round over one plaintext round, bytes and time, on the default LoRA adapter.

    python -m simulations.benchmarks.secagg [--clients 10 50] [--dropout 0 0.3] [--repeats 3]

Every message goes through Flower's protobuf serialization (``recorddict_to_proto``), so the bytes are
the records' wire size; both modes carry the same train instruction down and the same client
metrics up. Times are CPU seconds of this process, all parties in turn:

* plaintext: each client serializes its fp32 update; the server parses them and takes the weighted
  mean;
* secure aggregation: the four stages, each client restoring and saving its state through a
  ConfigRecord (Flower's ``context.state``) at every message, then the server's unmasking.

``latency`` assumes clients run in parallel on their own devices and an instant network: the sum over
stages of the slowest client plus the server. Local training, identical in both modes and seconds
long, is left out. Dropouts (``--dropout``) leave after sharing their keys, the costly case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

from client.secagg import SecAggClient
from fedpriv.config import RunConfig
from fedpriv.modeling import initial_adapter_state, state_num_bytes
from fedpriv.secagg.errors import SecAggAborted
from fedpriv.secagg.layout import VectorLayout
from fedpriv.secagg.messages import MASKED_INPUT, STAGES, UNMASK
from fedpriv.secagg.quantization import QuantizationSpec
from strategies.robust import weighted_mean
from strategies.secagg import SecAggServer

CLIP_RANGE = 1.0
MAX_WEIGHT = 1000
SERVER = "server"


@dataclass
class Cost:
    """Bytes per client and seconds per party and stage for one round."""

    up: dict[int, int] = field(default_factory=dict)
    down: dict[int, int] = field(default_factory=dict)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # stage → party → s

    def add(self, stage: str, party: str, seconds: float) -> None:
        self.seconds.setdefault(stage, {}).setdefault(party, 0.0)
        self.seconds[stage][party] += seconds

    def total_seconds(self) -> float:
        return sum(sum(parties.values()) for parties in self.seconds.values())

    def server_seconds(self) -> float:
        return sum(parties.get(SERVER, 0.0) for parties in self.seconds.values())

    def latency(self) -> float:
        return sum(
            parties.get(SERVER, 0.0) + max((s for p, s in parties.items() if p != SERVER), default=0.0)
            for parties in self.seconds.values()
        )


def timed(cost: Cost, stage: str, party: str, fn: Callable, *args):
    start = time.process_time()
    out = fn(*args)
    cost.add(stage, party, time.process_time() - start)
    return out


def wire(record: RecordDict) -> bytes:
    return recorddict_to_proto(record).SerializeToString()


def parse(blob: bytes) -> RecordDict:
    proto = ProtoRecordDict()
    proto.ParseFromString(blob)
    return recorddict_from_proto(proto)


def instruction(global_arrays: Mapping[str, np.ndarray]) -> bytes:
    arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in global_arrays.items()})
    return wire(RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": 1, "mode": "fedavg"})}))


def client_metrics(weight: int) -> MetricRecord:
    return MetricRecord({"train_loss": 1.0, "num-examples": weight, "start_perplexity": 10.0})


def plaintext_round(updates: dict[int, dict[str, np.ndarray]], weights: dict[int, int], down: bytes,
                    sampled: list[int]) -> tuple[Cost, dict]:
    """``updates`` of the clients that reply; every ``sampled`` client got the instruction."""
    cost = Cost()
    cost.down = {node: len(down) for node in sampled}

    def reply(node: int) -> bytes:
        arrays = ArrayRecord({k: Array(v.astype(np.float32)) for k, v in updates[node].items()})
        return wire(RecordDict({"arrays": arrays, "metrics": client_metrics(weights[node])}))

    blobs = {node: timed(cost, "reply", str(node), reply, node) for node in updates}
    cost.up = {node: len(blob) for node, blob in blobs.items()}

    def aggregate() -> dict:
        records = [parse(blobs[node]) for node in sorted(blobs)]
        arrays = [{k: a.numpy() for k, a in r["arrays"].items()} for r in records]
        return weighted_mean(arrays, [int(r["metrics"]["num-examples"]) for r in records])

    return cost, timed(cost, "reply", SERVER, aggregate)


def secagg_round(updates: dict[int, dict[str, np.ndarray]], weights: dict[int, int], down: bytes,
                 dropped: set[int], degree: int | None = None) -> tuple[Cost, dict, SecAggServer]:
    cost = Cost()
    nodes = sorted(updates)
    layout = VectorLayout.of(updates[nodes[0]])
    spec = QuantizationSpec.for_clients(len(nodes), CLIP_RANGE, max_weight=MAX_WEIGHT)
    server = SecAggServer(1, nodes, layout.size, spec, degree=degree)
    states: dict[int, bytes] = {n: wire(RecordDict({"secagg": ConfigRecord({})})) for n in nodes}
    cost.up = dict.fromkeys(nodes, 0)
    cost.down = {n: len(down) for n in nodes}  # the train instruction, as in plaintext

    def send(requests_fn) -> dict[int, bytes]:
        return {n: wire(RecordDict({"secagg": ConfigRecord(r.to_fields())})) for n, r in requests_fn().items()}

    def answer(node: int, stage: str, blob: bytes) -> bytes:
        fields = dict(parse(blob)["secagg"])
        client = SecAggClient.restore(node, dict(parse(states[node])["secagg"]))
        reply = client.handle(fields, lambda: (layout.flatten(updates[node]), weights[node]))
        states[node] = wire(RecordDict({"secagg": ConfigRecord(client.export())}))
        content = {"secagg": ConfigRecord(reply)}
        if stage == MASKED_INPUT:
            content["metrics"] = client_metrics(weights[node])
        return wire(RecordDict(content))

    def receive(receive_fn, replies: dict[int, bytes]) -> None:
        receive_fn([(n, dict(parse(b)["secagg"])) for n, b in replies.items()])

    for stage, make, take in server.stages():
        requests = timed(cost, stage, SERVER, send, make)
        replies: dict[int, bytes] = {}
        for node, blob in requests.items():
            cost.down[node] += len(blob)
            if node in dropped and STAGES.index(stage) >= STAGES.index(MASKED_INPUT):
                continue
            replies[node] = timed(cost, stage, str(node), answer, node, stage, blob)
            cost.up[node] += len(replies[node])
        timed(cost, stage, SERVER, receive, take, replies)

    def unmask_and_average() -> dict:
        result = server.finish()
        return layout.unflatten(result.mean())

    return cost, timed(cost, UNMASK, SERVER, unmask_and_average), server


def median_cost(costs: list[Cost], survivors: list[set[int]]) -> dict[str, float]:
    """Upload per surviving client, all bytes of the round (both directions), CPU and latency."""
    return {
        "up": statistics.mean(statistics.mean(c.up[i] for i in alive) for c, alive in zip(costs, survivors, strict=True)),
        "round": statistics.mean(sum(c.up.values()) + sum(c.down.values()) for c in costs),
        "total": statistics.median(c.total_seconds() for c in costs),
        "server": statistics.median(c.server_seconds() for c in costs),
        "latency": statistics.median(c.latency() for c in costs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.0, 0.3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--degree", type=int, default=None,
                        help="graph degree (default: fedpriv.secagg.graph.default_degree, complete up to 100 clients)")
    args = parser.parse_args(argv)

    state = initial_adapter_state(RunConfig())
    global_arrays = {k: v.numpy() for k, v in state.items()}
    shapes = {k: v.shape for k, v in global_arrays.items()}
    size = sum(int(np.prod(s)) for s in shapes.values())
    down = instruction(global_arrays)
    print(f"default adapter: {len(shapes)} tensors, {size} fp32 values = {state_num_bytes(state)} bytes; "
          f"instruction record {len(down)} bytes; load average {os.getloadavg()[0]:.1f}")
    header = (f"{'clients':>7} {'drop':>5} | {'upload B per survivor':>23} {'x':>5} | {'round MB (up+down)':>17} {'x':>5} | "
              f"{'CPU s (all parties)':>21} {'x':>6} | {'latency s':>15} {'x':>5} | deg  t  bits  mean-err")
    print(header)
    rng = np.random.default_rng(0)
    for n in args.clients:
        for dropout in args.dropout:
            plain_costs, secure_costs, alive, aborted = [], [], [], 0
            for _ in range(args.repeats):
                nodes = sorted({int(x) for x in rng.integers(1, 2**63, size=n)})
                updates = {i: {k: rng.normal(0, 0.01, s) for k, s in shapes.items()} for i in nodes}
                weights = {i: int(rng.integers(20, MAX_WEIGHT)) for i in nodes}
                dropped = set(nodes[: int(round(dropout * n))])
                survivors = {i: updates[i] for i in nodes if i not in dropped}
                plain, _ = plaintext_round(survivors, weights, down, nodes)
                try:
                    secure, secure_mean, server = secagg_round(updates, weights, down, dropped, args.degree)
                except SecAggAborted as err:
                    aborted += 1
                    print(f"  aborted: {err}")
                    continue
                exact = weighted_mean(list(survivors.values()), [weights[i] for i in survivors])  # float64, before fp32
                bound = server.quantization.coordinate_error
                worst = max(float(np.abs(secure_mean[k] - exact[k]).max()) for k in shapes)
                if worst > bound * (1 + 1e-6):
                    raise SystemExit(f"secure mean differs from the plaintext mean by {worst:.3g} > bound {bound:.3g}")
                plain_costs.append(plain)
                secure_costs.append(secure)
                alive.append(set(survivors))
            if not secure_costs:
                print(f"{n:>7} {dropout:>5.0%} | every repeat aborted")
                continue
            p, s = median_cost(plain_costs, alive), median_cost(secure_costs, alive)
            q = server.quantization
            print(
                f"{n:>7} {dropout:>5.0%} | {p['up']:>10,.0f} → {s['up']:>10,.0f} {s['up'] / p['up']:>5.2f} | "
                f"{p['round'] / 1e6:>7.2f} → {s['round'] / 1e6:>7.2f} {s['round'] / p['round']:>5.2f} | "
                f"{p['total']:>8.3f} → {s['total']:>8.3f} {s['total'] / p['total']:>6.1f} | "
                f"{p['latency']:>6.3f} → {s['latency']:>6.3f} {s['latency'] / p['latency']:>5.1f} | "
                f"{server.graph.degree:>3} {server.threshold:>2} {q.value_bits:>4}  {q.coordinate_error:.1e}"
                + (f"  ({aborted}/{args.repeats} aborted)" if aborted else "")
            )


if __name__ == "__main__":
    main()
