"""Client-level DP noise: seeded noise repeats with its seed, secure noise comes from the CSPRNG and says so."""

from __future__ import annotations

import numpy as np
import pytest

from fedpriv.errors import ConfigError
from strategies.base import decode_record
from strategies.client_dp import ClientLevelDP
from strategies.ffa import FFALora
from tests.fakes import ONE_NODE, configure_by_node, instruction_arrays, make_adapter, make_reply

pytestmark = pytest.mark.usefixtures("task_identity")


def _round(noise_source: str, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    strategy = ClientLevelDP(FFALora(**ONE_NODE), clipping_norm=0.5, noise_multiplier=1.0, sampling="all", seed=seed,
                             noise_source=noise_source)
    msgs = configure_by_node(strategy, [1, 2], make_adapter(rank=4, seed=0, zero_b=True))
    replies = [make_reply(msgs[n], {k: v + 1e-3 for k, v in instruction_arrays(msgs[n]).items()}) for n in msgs]
    arrays, _ = strategy.aggregate_train(1, replies)
    return decode_record(arrays), strategy.privacy_records[1]


def test_seeded_noise_repeats_with_its_seed_and_changes_with_it():
    first, record = _round("seeded", seed=3)
    again, _ = _round("seeded", seed=3)
    other, _ = _round("seeded", seed=4)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first)
    assert "seeded" in record["noise_source"] and "not cryptographic" in record["noise_source"]


def test_secure_noise_never_repeats_and_is_named_in_the_privacy_record():
    first, record = _round("secure", seed=3)
    again, _ = _round("secure", seed=3)
    assert any(not np.array_equal(first[k], again[k]) for k in first)  # the seed does not determine it
    assert "ChaCha20" in record["noise_source"]


def test_an_unknown_noise_source_is_refused_by_name():
    with pytest.raises(ConfigError, match="dp-noise-source"):
        ClientLevelDP(FFALora(**ONE_NODE), clipping_norm=0.5, noise_multiplier=1.0, sampling="all", noise_source="os")
