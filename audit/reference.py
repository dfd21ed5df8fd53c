"""Reference models for the offline LiRA attack: adapters trained without any of the audited records.

The attacker of Carlini et al.'s offline variant knows the data distribution, not the target's
records. Here that is a fresh synthetic federation of the run's profile from another seed (the
same generators, none of the same records), split into K random halves, one adapter trained on
each, plain (no DP: the strongest reference), with the run's own local training settings for the
run's total local epochs. A run on the user's own data (`--data`) has no generator to draw from:
the base model is then the single reference (LiRA degenerates to the difficulty-calibrated loss
attack of Watson et al. 2022).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

import numpy as np

from audit.scoring import RunModels
from client.dp_training import encode, train_locally
from fedpriv.adapter_parts import set_trainable_for_mode

DEFAULT_REFERENCE_MODELS = 4


def reference_losses(models: RunModels, synthetic: bool, count: int = DEFAULT_REFERENCE_MODELS, seed: int = 1) -> Callable[[Sequence[str]], np.ndarray]:
    """A function texts → [K, n] losses under K reference models (trained once, on first use)."""
    config = models.config
    if not synthetic or count < 1:
        base = models.base()
        return lambda texts: models.losses(base, texts)[None, :]
    from simulations.synthetic import generate_federation

    shadow = generate_federation(config.profile, config.num_clients, config.records_per_client, seed=config.seed + 10_000 + seed)
    pool = [text for texts in shadow.values() for text in texts]
    rng = random.Random(seed)
    plain = dataclasses.replace(config, dp="none", local_epochs=config.rounds * config.local_epochs)
    trained = []
    for k in range(count):
        half = rng.sample(pool, len(pool) // 2)
        model = models.cache.lora_model(plain)
        set_trainable_for_mode(model, "fedavg")
        train_locally(model, encode(models.tokenizer, half, config.max_seq_len), plain, None, seed=seed * 1000 + k)
        trained.append(model)
    return lambda texts: np.stack([models.losses(model, texts) for model in trained])
