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
