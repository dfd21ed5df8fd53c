"""A strategy wrapper that writes the run record from what the strategy accepted.

The wrapped strategy validates every reply first; the record is then written from the phase's
`PhaseReport` (accepted replies, rejections with reasons, failures, nodes that never answered), so a
malformed or forged reply can neither stop the server nor reach `metrics.json` as data. Recording
is added by wrapping (like Flower's DP wrappers), so the strategies stay unaware of the record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from server.run_record import RunRecord
from strategies.base import LoraStrategy
from strategies.client_dp import ClientLevelDP


def lora_strategy_of(strategy: Strategy) -> LoraStrategy:
    """The fedpriv strategy that validates replies (itself, or the one client-level DP wraps)."""
    if isinstance(strategy, LoraStrategy):
        return strategy
    if isinstance(strategy, ClientLevelDP):
        return strategy.strategy
    raise TypeError(f"the run record needs a fedpriv strategy (strategies/), got {type(strategy).__name__}")


class RecordingStrategy(Strategy):
    def __init__(self, inner: LoraStrategy | ClientLevelDP, record: RunRecord) -> None:
        self.inner = inner
        self.validating = lora_strategy_of(inner)
        self.record = record
        self._started: dict[tuple[str, int], float] = {}

    def summary(self) -> None:
        self.inner.summary()

    def _record(self, phase: str, server_round: int) -> None:
        report = self.validating.phase_report(phase, server_round)
        if report is not None:
            self.record.add_phase(report)

    def configure_identify(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> list[Message]:
        return self.inner.configure_identify(server_round, arrays, config, grid)

    def aggregate_identify(self, server_round: int, replies: Iterable[Message]) -> None:
        self.inner.aggregate_identify(server_round, replies)
        self._record("identify", server_round)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self._started[("train", server_round)] = time.monotonic()
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        result = self.inner.aggregate_train(server_round, replies)
        self._record_train(server_round)
        self._timed("train", server_round)
        return result

    @property
    def secure_aggregation(self) -> bool:
        return self.validating.secure_aggregation

    def train_secure(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid,
                     send: Callable[[list[Message]], list[Message]]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        self._started[("train", server_round)] = time.monotonic()
        result = self.inner.train_secure(server_round, arrays, config, grid, send)
        self._record_train(server_round)
        self._timed("train", server_round)
        return result

    def _timed(self, phase: str, server_round: int) -> None:
        """Wall seconds from the phase's first instruction to its aggregate (training included)."""
        started = self._started.pop((phase, server_round), None)
        if started is not None:
            self.record.seconds.setdefault(server_round, {})[phase] = round(time.monotonic() - started, 3)

    def _record_train(self, server_round: int) -> None:
        self._record("train", server_round)
        client_level = getattr(self.inner, "privacy_records", {}).get(server_round)
        if client_level is not None:
            self.record.client_level[server_round] = dict(client_level)
        secure = self.validating.secure_records.get(server_round)
        if secure is not None:
            self.record.secure[server_round] = dict(secure)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self._started[("evaluate", server_round)] = time.monotonic()
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        result = self.inner.aggregate_evaluate(server_round, replies)
        self._record("evaluate", server_round)
        self._timed("evaluate", server_round)
        return result
