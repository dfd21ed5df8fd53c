"""Fixtures of the deployment tests."""

from __future__ import annotations

import pytest

from tests.deploy.processes import Processes


@pytest.fixture()
def processes(tmp_path):
    """Start Flower's programs in the test's folder; every one of them (and whatever they started,
    e.g. the local SuperLink `flwr run` leaves running) is stopped afterwards, even on failure."""
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.stop_all()
