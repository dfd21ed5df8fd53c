"""Secure aggregation through fedpriv's round loop (server/rounds.py, run_federation) over a fake
grid whose devices answer with the device code (client/secagg_app.py): a round survives 30% of
its nodes dropping after key sharing, too few survivors abort it cleanly (the previous global
adapter kept, no share revealed), client-level DP releases the noise alone when a round aborts,
and an instrumented server never holds one device's update at any point of a whole run."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType
from safetensors.torch import load_file

from fedpriv.config import RunConfig
from fedpriv.modeling import initial_adapter_state
from fedpriv.secagg.messages import MASKED_INPUT, SETUP, UNMASK, SetupRequest
from fedpriv.secagg.protocol import unpack_vector
from fedpriv.secagg.quantization import QuantizationSpec, quantize
from fedpriv.secagg.update import SECAGG_RECORD
from server.recording import RecordingStrategy
from server.rounds import run_rounds
from server.run_record import RunRecord
from server.server_app import make_strategy, run_federation
from strategies.base import decode_record
from tests.fake_secagg import held_values
from tests.server.fake_federation import FakeFederation

HOSPITALS = [f"h{i}" for i in range(10)]
PHONES = [f"phone-{i:02d}" for i in range(10)]
REPO = Path(__file__).resolve().parents[2]


def stage_of(message: Message) -> str | None:
    record = message.content.config_records.get(SECAGG_RECORD)
    return str(record["secagg-stage"]) if record is not None else None


def round_of(message: Message) -> int:
    return int(message.content["config"]["server-round"])


def drop_at(stage: str, clients: set[str], server_round: int = 1):
    """These devices' replies to ``stage`` of ``server_round`` are lost (they died after sending
    what came before); a plaintext train instruction counts as the setup stage."""
    def tamper(message: Message, reply: Message, client_id: str) -> list[Message]:
        here = stage_of(message) or (SETUP if message.metadata.message_type == MessageType.TRAIN else None)
        return [] if here == stage and client_id in clients and round_of(message) == server_round else [reply]
    return tamper


def first_masked_input_lost():
    """In every round, the first device to send its masked input drops out right then."""
    dropped: set[int] = set()

    def tamper(message: Message, reply: Message, client_id: str) -> list[Message]:
        if stage_of(message) == MASKED_INPUT and round_of(message) not in dropped:
            dropped.add(round_of(message))
            return []
        return [reply]
    return tamper


def run(out: Path, clients: list[str], tamper=None, **config) -> tuple[dict, FakeFederation]:
    grid = FakeFederation(clients, tamper=tamper, node_seed=3, profile=config.get("profile", "hospital"))
    run_federation(grid, RunConfig(num_clients=len(clients), out=str(out), **config).validated())
    return json.loads((out / "metrics.json").read_text()), grid


def adapter(out: Path, name: str) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in load_file(str(out / "adapters" / name / "adapter_model.safetensors")).items()}


def assert_within(secure: dict, plain: dict, bound: float) -> None:
    assert secure.keys() == plain.keys()
    for key, value in plain.items():
        ulp = np.spacing(np.abs(value).astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(secure[key].astype(np.float64) - value) <= bound + 2 * ulp), key


def test_a_round_completes_when_30_percent_of_the_nodes_drop_after_sharing_keys(tmp_path: Path) -> None:
    gone = {"h1", "h4", "h7"}
    settings = dict(profile="hospital", dp="none", rounds=1, min_train_nodes=7)
    metrics, grid = run(tmp_path / "secure", HOSPITALS, drop_at(MASKED_INPUT, gone), secure_aggregation=True, **settings)
    first = metrics["rounds"][0]
    secure = first["secure_aggregation"]
    assert secure["participants"] == 10 and secure["shared_keys"] == 10 and secure["in_sum"] == 7
    assert secure["dropouts_before_key_sharing"] == [] and secure["dropouts_after_key_sharing"] == sorted(gone)
    assert secure["dropouts_recovered"] == 3 and not secure["aborted"] and secure["released"] == "weighted mean"
    assert first["replies"]["train"]["aggregated"]
    assert set(secure["bytes_sent"]) == set(HOSPITALS) and min(secure["bytes_sent"].values()) > 0
    assert {"clip_range", "value_bits", "modulus_bits", "step", "coordinate_error_bound"} <= set(secure["quantization"])
    assert metrics["privacy"]["secure_aggregation"] is True
    assert any(stage_of(m) == UNMASK for m in grid.sent)
    # The same round in plaintext, where the three never answer: the same weighted mean of the seven.
    plain_metrics, _ = run(tmp_path / "plain", HOSPITALS, drop_at(SETUP, gone), secure_aggregation=False, **settings)
    assert "secure_aggregation" not in plain_metrics["rounds"][0]
    assert_within(adapter(tmp_path / "secure", "round-001"), adapter(tmp_path / "plain", "round-001"), secure["update_error_bound"])
    assert not np.array_equal(adapter(tmp_path / "secure", "round-001")[next(iter(adapter(tmp_path / "plain", "round-000")))],
                              adapter(tmp_path / "secure", "round-000")[next(iter(adapter(tmp_path / "plain", "round-000")))])


def test_fewer_survivors_than_the_threshold_abort_the_round_and_reveal_nothing(tmp_path: Path) -> None:
    gone = {"h0", "h2", "h4", "h6", "h8"}  # 5 of 10 left; the complete graph's threshold is 6
    out = tmp_path / "run"
    metrics, grid = run(out, HOSPITALS, drop_at(MASKED_INPUT, gone), profile="hospital", dp="none", rounds=2,
                        min_train_nodes=2, secure_aggregation=True)
    first, second = metrics["rounds"]
    secure = first["secure_aggregation"]
    assert secure["aborted"] and secure["released"] == "nothing" and secure["threshold"] == 6
    assert "fewer than 6 surviving share holders" in secure["abort_reason"]
    assert secure["dropouts_after_key_sharing"] == sorted(gone) and secure["dropouts_recovered"] == 0
    assert not first["replies"]["train"]["aggregated"] and "kept the previous global adapter" in first["replies"]["train"]["note"]
    assert "kept the previous global adapter" in (out / "report.md").read_text()
    # Nothing revealed: no unmask request went out in round 1, so no device sent a share.
    assert [m for m in grid.sent if round_of(m) == 1 and stage_of(m) == UNMASK] == []
    before, after = adapter(out, "round-000"), adapter(out, "round-001")
    assert all(np.array_equal(before[k], after[k]) for k in before)  # the previous global adapter, bit for bit
    assert second["replies"]["train"]["aggregated"] and not second["secure_aggregation"]["aborted"]  # the run went on


def test_under_client_level_dp_an_aborted_round_releases_the_accounted_noise_alone(tmp_path: Path) -> None:
    """Everyone sampled drops after key sharing. The secure round releases exactly what the plaintext
    round with no reply releases: the same noise (same seed), over the previous global adapter."""
    everyone = set(PHONES)
    secure, _ = run(tmp_path / "secure", PHONES, drop_at(MASKED_INPUT, everyone), profile="phone", rounds=1,
                    secure_aggregation=True)
    plain, _ = run(tmp_path / "plain", PHONES, drop_at(SETUP, everyone), profile="phone", rounds=1, secure_aggregation=False)
    record = secure["rounds"][0]["secure_aggregation"]
    assert record["aborted"] and record["released"] == "noise only"
    assert "released all the same" in secure["rounds"][0]["replies"]["train"]["note"]
    assert secure["privacy"]["client_level"] == plain["privacy"]["client_level"]  # ε: the round is accounted
    released, noise_only = adapter(tmp_path / "secure", "round-001"), adapter(tmp_path / "plain", "round-001")
    assert all(np.array_equal(released[k], noise_only[k]) for k in released)
    start = adapter(tmp_path / "secure", "round-000")
    assert any(not np.array_equal(released[k], start[k]) for k in released)


# ---------------------------------------------------------------------------------------------
# The instrumented server


class RecordingFederation(FakeFederation):
    """The fake devices, remembering (device side) each one's update per round, per tensor."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.updates: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        self.trained_arrays: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        self.weights: dict[tuple[int, str], int] = {}

    def trained(self, message: Message, client_id: str):
        content = super().trained(message, client_id)
        received = decode_record(message.content["arrays"])
        trained = decode_record(content["arrays"])
        key = (round_of(message), client_id)
        self.updates[key] = {k: trained[k].astype(np.float64) - received[k] for k in trained}
        self.trained_arrays[key] = trained
        self.weights[key] = int(content["metrics"]["num-examples"])
        return content


class InstrumentedGrid:
    """A grid in front of the devices that, whenever the server gets replies and after every round,
    searches all the server holds: the strategy (and the run record it writes), the replies, and
    the locals of every frame of server/ and strategies/ code on the stack, for one device's
    update: the update or the trained arrays per tensor (raw, clipped, weighted), the flat update,
    or its quantized integer vector, packed or not."""

    def __init__(self, federation: RecordingFederation, strategy: RecordingStrategy) -> None:
        self.federation = federation
        self.strategy = strategy
        self.specs: dict[int, QuantizationSpec] = {}
        self.findings: list[str] = []
        self.checks = 0
        self._forms: dict[tuple[int, str], list[tuple[np.ndarray, float]]] = {}

    def get_node_ids(self) -> list[int]:
        return self.federation.get_node_ids()

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        for message in messages:
            if stage_of(message) == SETUP:
                self.specs[round_of(message)] = SetupRequest.from_fields(dict(message.content[SECAGG_RECORD])).quantization
        replies = self.federation.send_and_receive(messages, timeout=timeout)
        frames = [f.frame.f_locals for f in inspect.stack(context=0)
                  if any(Path(f.filename).resolve().is_relative_to(REPO / part) for part in ("server", "strategies"))]
        self.check([self.strategy, replies, frames])
        return replies

    def check(self, held) -> None:
        self.checks += 1
        skip = {id(self), id(self.federation)}  # the devices' own side
        forms = self.forms()
        for value in held_values(held, set(skip)):
            shape = (len(value),) if isinstance(value, bytes) else np.shape(value)
            for label, candidate, tol in forms.get(shape, []):
                if _matches(value, candidate, tol):
                    self.findings.append(label)

    def forms(self) -> dict[tuple[int, ...], list[tuple[str, np.ndarray, float]]]:
        """Every form of every device's update so far, by the shape a held value must have to match
        (packed integer vectors by their byte length). Built once per device and round."""
        for key in self.federation.updates:
            if key not in self._forms:
                self._forms[key] = self._forms_of(*key)
        by_shape: dict[tuple[int, ...], list[tuple[str, np.ndarray, float]]] = {}
        for (server_round, client), candidates in self._forms.items():
            for candidate, tol in candidates:
                shapes = [candidate.shape] + ([(candidate.size * 6,)] if candidate.dtype.kind == "u" else [])
                for shape in shapes:
                    by_shape.setdefault(shape, []).append((f"round {server_round}, {client}", candidate, tol))
        return by_shape

    def _forms_of(self, server_round: int, client: str) -> list[tuple[np.ndarray, float]]:
        update = self.federation.updates[(server_round, client)]
        spec = self.specs.get(server_round)
        weight = self.federation.weights[(server_round, client)]
        tol = 2 * spec.step * max(weight, 1) if spec else 1e-9
        flat = np.concatenate([v.ravel() for v in update.values()])
        c = spec.clip_range if spec else np.inf
        candidates = [(v, tol) for u in update.values() for v in (u, np.clip(u, -c, c), weight * u)]
        candidates += [(t.astype(np.float64), 0.0) for t in self.federation.trained_arrays[(server_round, client)].values()]
        candidates += [(flat, tol), (weight * flat, tol)]
        if spec is not None:
            nearest = QuantizationSpec(spec.clip_range, spec.value_bits, spec.modulus_bits, spec.max_weight, "deterministic")
            for w in sorted({1, min(weight, spec.max_weight)}):
                candidates.append((quantize(flat, w, nearest), float(w)))
        return candidates


def _matches(value, candidate: np.ndarray, tol: float) -> bool:
    if isinstance(value, bytes):
        width = 6  # the default modulus: 48 bits
        if candidate.dtype.kind != "u" or len(value) != candidate.size * width:
            return False
        value = unpack_vector(value, candidate.size, 48)
    value = np.asarray(value)
    if value.shape != candidate.shape or value.dtype.kind not in "uif" or not value.size:
        return False
    head = min(4, value.size)  # a cheap look at a few entries first: most candidates differ right away
    if np.abs(value.ravel()[:head].astype(np.float64) - candidate.ravel()[:head].astype(np.float64)).max() > tol:
        return False
    if candidate.dtype.kind == "u":
        return value.dtype.kind in "ui" and np.abs(value.astype(np.int64) - candidate.astype(np.int64)).max() <= tol
    return value.dtype.kind == "f" and np.allclose(value.astype(np.float64), candidate, rtol=0, atol=tol)


@pytest.mark.parametrize(("secure", "settings"), [
    (True, dict(profile="phone")),  # client-level DP, ffa, Poisson sampling: the phone default
    (True, dict(profile="hospital", dp="none", min_train_nodes=5)),  # fedavg weighted by num-examples
    (False, dict(profile="hospital", dp="none")),  # control: the plaintext server does hold updates
])
def test_the_instrumented_server_never_holds_one_devices_update(tmp_path: Path, secure: bool, settings: dict) -> None:
    clients = PHONES if settings["profile"] == "phone" else HOSPITALS[:6]
    config = RunConfig(num_clients=len(clients), rounds=2, out=str(tmp_path), secure_aggregation=secure, **settings).validated()
    federation = RecordingFederation(clients, node_seed=5, profile=config.profile, tamper=first_masked_input_lost())
    strategy = RecordingStrategy(make_strategy(config, len(clients)), RunRecord(config=config, out_dir=tmp_path))
    grid = InstrumentedGrid(federation, strategy)
    run_config = ConfigRecord(config.to_flower())
    run_rounds(strategy, grid, ArrayRecord(initial_adapter_state(config)), first_round=1, num_rounds=2, timeout=30.0,
               train_config=run_config, evaluate_config=run_config, after_round=lambda r, arrays: grid.check([strategy, arrays]))
    exchanges = 1 + 2 * ((4 if secure else 1) + 1 + 1)  # identify; per round: train stages, evaluate, after_round
    assert federation.updates and grid.checks == exchanges  # all of it was searched
    if not secure:
        assert grid.findings  # the search does find updates where they are
        return
    assert grid.findings == []
    records = strategy.record.secure
    assert sorted(records) == [1, 2] and all(not r["aborted"] for r in records.values())
    assert all(r["dropouts_recovered"] == 1 for r in records.values())  # a dropout's masks rebuilt: still no update
