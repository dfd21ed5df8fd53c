"""simulations.studies.comparison.workers: the device side a task reads, the after-the-fact ε audit,
and a local-only task run in this process with the calibrated σ of a federated client."""

from __future__ import annotations

import math

import pytest

from client.dp_training import noise_multiplier_for
from client.personalize import total_local_epochs
from fedpriv.config import RunConfig
from fedpriv.data import split_records
from fedpriv.modeling import load_tokenizer
from simulations.studies.comparison import workers
from simulations.synthetic import generate_federation


@pytest.fixture()
def device_side(models):
    side = workers.DeviceSide(models, load_tokenizer("default"))
    previous = workers.install(side)
    yield side
    workers.install(previous)


def test_a_task_outside_a_worker_says_what_is_missing():
    previous = workers.install(None)
    try:
        with pytest.raises(RuntimeError, match="no device side in this process"):
            workers.current()
    finally:
        workers.install(previous)


def test_install_sets_this_process_device_side_and_returns_the_one_it_replaces(models):
    first, second = workers.DeviceSide(models, "tokenizer-1"), workers.DeviceSide(models, "tokenizer-2")
    previous = workers.install(first)
    try:
        assert workers.current() is first
        assert workers.install(second) is first and workers.current() is second
    finally:
        workers.install(previous)


def test_results_audit_refuses_a_device_over_its_target_epsilon():
    private = RunConfig(dp="record", target_epsilon=8.0)
    workers.audit_spent(private, "ok", 7.99)
    with pytest.raises(RuntimeError, match="phone-03 spent"):
        workers.audit_spent(private, "phone-03", 8.01)
    workers.audit_spent(RunConfig(dp="none"), "no DP", None)


def test_local_only_task_trains_with_the_federated_clients_sigma(device_side):
    client_id, records = next(iter(generate_federation("hospital", 1, 30, seed=0).items()))
    client = split_records(client_id, records, 0.2, 0)
    config = RunConfig(model="default", rounds=1, local_epochs=1, finetune_epochs=1, batch_size=8, max_seq_len=24,
                       dp="record", target_epsilon=2.0, accountant="rdp", dp_scope="all").validated()
    row, from_scratch = workers.task_local_only(config, client)
    assert row["noise_multiplier"] == noise_multiplier_for(config, len(client.train))  # the σ a federated client of this config uses
    assert 0.9 * config.target_epsilon < row["epsilon"] <= config.target_epsilon + 1e-9
    assert row["epochs"] == total_local_epochs(config) and row["train_loss"] is not None and row["validation_loss"] is None
    assert from_scratch is None  # under record-level DP there is no early-stopped model to hand over
    base = workers.task_base(config, client)  # the base model (an adapter with B = 0) on the same held-out split
    assert math.isfinite(base) and math.isfinite(row["perplexity"]) and base != pytest.approx(row["perplexity"], rel=1e-6)
