"""Shared fixtures. Everything runs offline on the shipped default model and synthetic data."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than ~20 s (starts Ray or a model server); still run in CI")


@pytest.fixture(scope="session")
def task_identity() -> None:
    """Message() outside a Flower process needs the run/node/task identity a ServerApp would set."""
    from tests.fakes import ensure_task_identity

    ensure_task_identity()


@pytest.fixture(scope="session")
def models():
    """The shipped default base model, loaded once; each `lora_model(config)` is a fresh copy."""
    from client.personalize import BaseModelCache

    return BaseModelCache("default")


class OptimizerSteps:
    """What every AdamW step did to its parameters: (before, after) copies per step, in order.

    Recorded with torch's global optimizer step hooks, so it sees the steps that training code takes
    inside its own functions (Opacus' DPOptimizer wraps the AdamW: only the AdamW's steps count)."""

    def __init__(self) -> None:
        self.steps: list[tuple[list, list]] = []
        self._before: list | None = None

    @staticmethod
    def _params(optimizer) -> list:
        return [p.detach().clone() for group in optimizer.param_groups for p in group["params"]]

    def pre(self, optimizer, args, kwargs) -> None:
        import torch

        if type(optimizer) is torch.optim.AdamW:
            self._before = self._params(optimizer)

    def post(self, optimizer, args, kwargs) -> None:
        import torch

        if type(optimizer) is torch.optim.AdamW and self._before is not None:
            self.steps.append((self._before, self._params(optimizer)))
            self._before = None

    def unchanged_tensors(self) -> list[tuple[int, int]]:
        """(step, tensor index) of every parameter tensor a step left exactly as it was."""
        import torch

        return [(i, j) for i, (before, after) in enumerate(self.steps) for j, (b, a) in enumerate(zip(before, after)) if torch.equal(b, a)]


@pytest.fixture
def optimizer_steps():
    """Records the AdamW steps taken while the test runs (the opacus#820 guard: each DP step must move the adapter)."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    recorder = OptimizerSteps()
    handles = [register_optimizer_step_pre_hook(recorder.pre), register_optimizer_step_post_hook(recorder.post)]
    yield recorder
    for handle in handles:
        handle.remove()
