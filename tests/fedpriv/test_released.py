"""fedpriv.released: every field of a reply is named, with the mechanism its device declared."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedpriv.released import DECLARATION, UNDECLARED, declaration, released_fields


def _content(declared: dict[str, str]) -> RecordDict:
    return RecordDict({
        "arrays": ArrayRecord({"a": Array(np.zeros(3, dtype=np.float32))}),
        "metrics": MetricRecord({"num-examples": 10, "epsilon": 1.5, "train_loss": 2.0}),
        "client": ConfigRecord({"client-id": "c", "server-round": 1}),
        DECLARATION: ConfigRecord(declared),
    })


def test_every_field_is_listed_with_its_declared_mechanism_or_as_undeclared():
    fields = released_fields(_content({"arrays": "dp-sgd", "metrics.epsilon": "accounting", "metrics.num-examples": "public",
                                       "client.client-id": "public", "client.server-round": "public"}))
    assert fields == {"arrays": "dp-sgd", "metrics.num-examples": "public", "metrics.epsilon": "accounting",
                      "metrics.train_loss": UNDECLARED, "client.client-id": "public", "client.server-round": "public"}


def test_a_declaration_names_only_known_mechanisms():
    assert declaration({"arrays": "dp-sgd"}) == {"arrays": "dp-sgd"}
    with pytest.raises(ValueError, match="unknown"):
        declaration({"arrays": "trust me"})
