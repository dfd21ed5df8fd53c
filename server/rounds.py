"""The round loop: Flower's `Strategy.start`, but able to begin at any round.

Flower 1.41's `start` always runs rounds 1..N, so a resumed run could not continue at round k+1
with it; this loop is the same sequence (train, then evaluate, each through
`grid.send_and_receive(..., timeout=...)`), begins at `first_round`, first asks the nodes which
client each one is (`configure_identify`), gives every instruction the round timeout as its time to
live, and calls `after_round(round, arrays)` when a round is complete, for the checkpoint.

Under secure aggregation a train round is four exchanges instead of one (setup with the train
instruction, share-keys, masked-input, unmask: `strategies/secure_round.py`); the strategy runs
them through the `send` it is given here, each with the round timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.common import log
from flwr.serverapp import Grid

from server.recording import RecordingStrategy


def exchange(grid: Grid, messages: Iterable[Message], timeout: float) -> list[Message]:
    """Send instructions and collect the replies that arrive within `timeout` seconds.

    Each instruction lives `timeout` seconds: the SuperLink then answers for a node that never
    fetched it with an error reply, and a node coming back later does not act on a closed round."""
    messages = list(messages)
    if not messages:
        return []
    for message in messages:
        message.metadata.ttl = timeout
    return list(grid.send_and_receive(messages, timeout=timeout))


def run_rounds(
    strategy: RecordingStrategy,
    grid: Grid,
    arrays: ArrayRecord,
    *,
    first_round: int,
    num_rounds: int,
    timeout: float,
    train_config: ConfigRecord,
    evaluate_config: ConfigRecord,
    after_round: Callable[[int, ArrayRecord], None],
) -> ArrayRecord:
    """Rounds `first_round`..`num_rounds` from the global `arrays`; returns the final global arrays."""
    strategy.summary()
    started = time.time()
    if first_round <= num_rounds:  # the adapter identified with comes from round first_round - 1 (0: the initial one)
        replies = exchange(grid, strategy.configure_identify(first_round - 1, arrays, evaluate_config, grid), timeout)
        strategy.aggregate_identify(first_round - 1, replies)
    for server_round in range(first_round, num_rounds + 1):
        log(INFO, "")
        log(INFO, "[ROUND %s/%s]", server_round, num_rounds)
        if strategy.secure_aggregation:
            new_arrays, train_metrics = strategy.train_secure(server_round, arrays, train_config, grid,
                                                              lambda messages: exchange(grid, messages, timeout))
        else:
            replies = exchange(grid, strategy.configure_train(server_round, arrays, train_config, grid), timeout)
            new_arrays, train_metrics = strategy.aggregate_train(server_round, replies)
        if new_arrays is not None:
            arrays = new_arrays
        if train_metrics is not None:
            log(INFO, "\t└──> Aggregated MetricRecord: %s", train_metrics)
        replies = exchange(grid, strategy.configure_evaluate(server_round, arrays, evaluate_config, grid), timeout)
        evaluate_metrics = strategy.aggregate_evaluate(server_round, replies)
        if evaluate_metrics is not None:
            log(INFO, "\t└──> Aggregated MetricRecord: %s", evaluate_metrics)
        after_round(server_round, arrays)
    log(INFO, "Rounds %d-%d finished in %.2fs", first_round, num_rounds, time.time() - started)
    return arrays
