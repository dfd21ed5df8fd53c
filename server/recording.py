"""A strategy wrapper that records every reply into the run record before the strategy sees it.

Recording is added by wrapping (like Flower's DP wrappers), so any strategy gets a run record
without being edited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from server.run_record import RunRecord


class RecordingStrategy(Strategy):
    def __init__(self, inner: Strategy, record: RunRecord, on_round_end: Callable[[int], None] | None = None) -> None:
        self.inner = inner
        self.record = record
        self.on_round_end = on_round_end

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        self.record.add_train_replies(server_round, replies)
        result = self.inner.aggregate_train(server_round, replies)
        # fedpriv strategies expose what they rejected and (under client-level DP) what was spent.
        rejected = getattr(self.inner, "rejections", {}).get(server_round, [])
        if rejected:
            self.record.rejections[server_round] = [f"node {node}: {reason}" for node, reason in rejected]
        client_level = getattr(self.inner, "privacy_records", {}).get(server_round)
        if client_level is not None:
            self.record.client_level[server_round] = dict(client_level)
        return result

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = list(replies)
        self.record.add_evaluate_replies(server_round, replies)
        result = self.inner.aggregate_evaluate(server_round, replies)
        self.record.save()
        if self.on_round_end is not None:
            self.on_round_end(server_round)
        return result
