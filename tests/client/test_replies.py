"""client.replies: which fields a reply carries under each DP mode, and the mechanism declared for each."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ArrayRecord

from client.replies import arrays_mechanism, kept_on_device, reply_content
from fedpriv.config import RunConfig
from fedpriv.released import DECLARATION, UNCOVERED, released_fields

MEASURED = {"train_loss": 2.0, "start_perplexity": 30.0, "num-examples": 40, "epsilon": 1.2, "delta": 1e-5,
            "noise_multiplier": 0.9, "steps": 12, "sample_rate": 0.2, "round_steps": 6, "learning_rate": 0.001}
CLIENT = {"client-id": "hospital-00", "server-round": 1, "profile": "hospital"}


@pytest.mark.parametrize("dp", ["record", "client", "both"])
def test_under_dp_only_covered_fields_leave(dp):
    config = RunConfig(dp=dp).validated()
    content = reply_content(config, MEASURED, CLIENT, ArrayRecord({"w": torch.zeros(2)}))
    fields = released_fields(content)
    assert not [f for f, m in fields.items() if m in UNCOVERED]
    assert set(content["metrics"].keys()) == set(MEASURED) - {"train_loss", "start_perplexity"}
    assert kept_on_device(config, MEASURED) == ["start_perplexity", "train_loss"]
    assert fields["arrays"] == ("dp-sgd" if dp == "record" else "dp-fedavg")


def test_without_dp_everything_is_sent_declared_unprotected():
    config = RunConfig(dp="none").validated()
    content = reply_content(config, MEASURED, CLIENT)
    assert set(content["metrics"].keys()) == set(MEASURED) and "arrays" not in content
    assert released_fields(content)["metrics.train_loss"] == "none"
    assert set(content[DECLARATION].keys()) == set(released_fields(content))  # every field is declared


def test_secure_aggregation_names_its_mechanism_and_unknown_client_fields_are_refused():
    assert arrays_mechanism(RunConfig(dp="client").validated(), secure=True) == "dp-fedavg+secagg"
    assert arrays_mechanism(RunConfig(dp="none").validated(), secure=True) == "secagg"
    with pytest.raises(ValueError, match="no declared mechanism"):
        reply_content(RunConfig(dp="none").validated(), MEASURED, {**CLIENT, "home-address": "x"})
