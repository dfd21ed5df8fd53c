"""`dp-scope`: what record-level ε covers. `all` (the default) charges every training on the
device's records; `uploads` charges only what leaves the device, so the federation gets the whole
budget while local-only and the on-device fine-tuning train as without DP (joint DP). What the
comparison does with it: tests/studies/test_baselines.py and tests/studies/comparison/test_reuse.py."""

from __future__ import annotations

import math

import pytest

from client.dp_training import noise_multiplier_for, planned_dp_steps
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError


def _config(**overrides) -> RunConfig:
    values = dict(dp="record", target_epsilon=8.0, rounds=5, local_epochs=2, finetune_epochs=5, batch_size=16,
                  max_seq_len=24, accountant="rdp", seed=0, dp_scope="all")
    values.update(overrides)
    return RunConfig(**values).validated()


def test_a_bad_scope_is_named():
    with pytest.raises(ConfigError, match="dp-scope: must be one of all, uploads, got 'device'"):
        _config(dp_scope="device")


def test_on_device_training_keeps_record_dp_only_when_epsilon_covers_it():
    everything, uploads = _config(), _config(dp_scope="uploads")
    assert everything.on_device_dp and everything.on_device() is everything
    assert not uploads.on_device_dp and uploads.record_dp  # the federation's DP-SGD is unchanged
    assert uploads.on_device().dp_mode == "none" and not uploads.on_device().record_dp
    assert _config(dp="both", dp_scope="uploads").on_device().dp_mode == "client"  # client-level DP concerns what is sent
    assert _config(dp="none", dp_scope="uploads").on_device_dp is False


def test_under_uploads_the_rounds_alone_spend_the_budget():
    everything, uploads = _config(), _config(dp_scope="uploads")
    batches = math.ceil(80 / 16)
    assert planned_dp_steps(everything, 80) == (5 * 2 + 5) * batches
    assert planned_dp_steps(uploads, 80) == 5 * 2 * batches
    # Fewer steps for the same ε: less noise on every update that leaves the device.
    assert noise_multiplier_for(uploads, 80) < noise_multiplier_for(everything, 80)
    assert noise_multiplier_for(uploads, 80) == pytest.approx(noise_multiplier_for(_config(finetune_epochs=0), 80))
