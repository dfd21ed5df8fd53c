"""DP-SGD noise on the device: seeded (reproducible) or from the CSPRNG (never the same twice), as the config says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from client.dp_training import SEEDED_TORCH_NOISE, draw_noise_from, encode, train_locally
from client.privacy_ledger import PrivacyLedger
from fedpriv.adapter_parts import set_trainable_for_mode
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state, load_tokenizer

TEXTS = [f"Patient {i} reports mild chest pain after exercise; follow up in {i % 7 + 1} weeks." for i in range(24)]


def _train(models, noise: str):
    config = RunConfig(dp="record", noise_multiplier=1.0, noise=noise, batch_size=8, max_seq_len=24, local_epochs=1).validated()
    model = models.lora_model(config)
    set_trainable_for_mode(model, "fedavg")
    outcome = train_locally(model, encode(load_tokenizer("default"), TEXTS, 24), config, PrivacyLedger(), seed=7)
    return adapter_state(model), outcome


def test_seeded_noise_repeats_and_secure_noise_does_not(models):
    seeded, outcome = _train(models, "seeded")
    again, _ = _train(models, "seeded")
    assert all(torch.equal(seeded[k], again[k]) for k in seeded) and outcome.noise_source == SEEDED_TORCH_NOISE
    secure, secure_outcome = _train(models, "secure")
    secure_again, _ = _train(models, "secure")
    assert any(not torch.equal(secure[k], secure_again[k]) for k in secure)
    assert "ChaCha20" in secure_outcome.noise_source


class _Recorded:
    """A noise source that returns a known constant and counts what it was asked for."""

    name = "recorded"
    cryptographic = False

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], float]] = []

    def normal(self, shape, std):
        self.calls.append((shape, std))
        return np.full(shape, 0.25)


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_opacus_adds_exactly_the_sources_noise(mode):
    from opacus import PrivacyEngine

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    criterion = torch.nn.CrossEntropyLoss()
    private = PrivacyEngine().make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), criterion=criterion,
                                           data_loader=loader, noise_multiplier=2.0, max_grad_norm=0.5, grad_sample_mode=mode)
    dp_model, dp_optimizer = private[0], private[1]
    dp_criterion = private[2] if mode == "ghost" else criterion
    source = _Recorded()
    assert draw_noise_from(dp_optimizer, source) == "recorded"
    x, y = next(iter(private[-1]))
    dp_optimizer.zero_grad()
    dp_criterion(dp_model(x), y).backward()
    dp_optimizer.accumulate() if mode == "ghost" else dp_optimizer.clip_and_accumulate()  # Opacus' step before the noise
    summed = [p.summed_grad.clone() for p in dp_optimizer.params]
    dp_optimizer.add_noise()
    assert [std for _, std in source.calls] == [pytest.approx(1.0)] * len(dp_optimizer.params)  # σ·C = 2 × 0.5
    for param, clipped in zip(dp_optimizer.params, summed, strict=True):  # the clipped sum plus exactly the source's noise
        torch.testing.assert_close(param.grad, (clipped + 0.25).view_as(param))
