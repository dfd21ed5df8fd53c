"""What a device's replies carry, and the mechanism that covers each field (fedpriv/released.py).

Under DP (record-level or client-level) a reply carries only the adapter tensors (or, under secure
aggregation, the protocol's messages), the accounting of the mechanism and the fields declared
public; the losses and held-out metrics the device measured stay in its own log
(fedpriv/device_log.py), since no mechanism covers them. Without DP nothing is covered and
everything is sent, declared "none". Every reply declares its fields, so the server's record and
`fedpriv audit released` can list what left the device and under what.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedpriv.config import RunConfig
from fedpriv.released import ARRAYS, DECLARATION, declaration, field_name

# Functions of the public training settings and the dataset size: what an ε is computed from.
ACCOUNTING_METRICS = ("epsilon", "delta", "noise_multiplier", "steps", "sample_rate", "round_steps", "learning_rate")
# Declared public: the server weights by it and plans with it; record-level ε does not cover it.
PUBLIC_METRICS = ("num-examples",)
CLIENT_FIELDS = {"client-id": "public", "server-round": "public", "profile": "public", "dp-noise-source": "accounting"}


def under_dp(config: RunConfig) -> bool:
    return config.record_dp or config.client_dp


def arrays_mechanism(config: RunConfig, secure: bool = False) -> str:
    """What covers the adapter update a device sends."""
    if config.client_dp:
        return "dp-fedavg+secagg" if secure else "dp-fedavg"
    if config.record_dp:
        return "dp-sgd"
    return "secagg" if secure else "none"


def metric_mechanism(key: str, config: RunConfig) -> str | None:
    """The mechanism a metric is sent under, or None: it stays on the device."""
    if key in PUBLIC_METRICS:
        return "public"
    if key in ACCOUNTING_METRICS:
        return "accounting"
    return None if under_dp(config) else "none"


def reply_content(
    config: RunConfig,
    metrics: Mapping[str, float | int],
    client: Mapping[str, str | int],
    arrays: ArrayRecord | None = None,
    secure: bool = False,
) -> RecordDict:
    """A reply holding `arrays` (if any), the metrics a mechanism covers, the client record, and the
    declaration of every field."""
    sent = {k: v for k, v in metrics.items() if metric_mechanism(k, config) is not None}
    declared = {field_name("metrics", k): str(metric_mechanism(k, config)) for k in sent}
    unknown = sorted(set(client) - set(CLIENT_FIELDS))
    if unknown:
        raise ValueError(f"client record fields with no declared mechanism: {', '.join(unknown)}")
    declared.update({field_name("client", k): CLIENT_FIELDS[k] for k in client})
    content: dict[str, ArrayRecord | MetricRecord | ConfigRecord] = {}
    if arrays is not None:
        content[ARRAYS] = arrays
        declared[ARRAYS] = arrays_mechanism(config, secure)
    content["metrics"] = MetricRecord(dict(sent))
    content["client"] = ConfigRecord(dict(client))
    content[DECLARATION] = ConfigRecord(declaration(declared))
    return RecordDict(content)


def kept_on_device(config: RunConfig, metrics: Mapping[str, float | int]) -> list[str]:
    """The metrics a reply under `config` leaves out."""
    return sorted(k for k in metrics if metric_mechanism(k, config) is None)
