"""What a device releases: every field of a reply, named, with the mechanism the device says covers it.

Every reply carries a ConfigRecord `DECLARATION` mapping each field it holds ("arrays", or
"<record>.<key>" such as "metrics.epsilon") to one of `MECHANISMS`. The server records the fields
and declarations of every accepted reply (metrics.json "released"), and `fedpriv audit` lists them:
under DP, a field covered by nothing, or not declared at all, is a channel around ε.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

DECLARATION = "released"  # the reply's ConfigRecord of field -> mechanism (not itself a data field)
ARRAYS = "arrays"
UNDECLARED = "undeclared"

MECHANISMS = {
    "dp-sgd": "record-level DP-SGD on the device (its ε: privacy.record_level)",
    "dp-fedavg": "clipped on the device; Gaussian noise added to the sum at the server (client-level ε); "
                 "without secure aggregation the server sees the clipped update",
    "dp-fedavg+secagg": "clipped and masked on the device (secure aggregation); noise added to the unmasked sum (client-level ε)",
    "secagg": "masked on the device (secure aggregation): the server sees only the sum, with no DP",
    "protocol": "secure-aggregation protocol messages (public keys, encrypted shares, masked input, unmasking shares): "
                "none reveals one device's update",
    "accounting": "the accounting of the mechanism (σ, q, steps, δ, ε): a function of the public training settings and the dataset size",
    "public": "declared public: the device's id, the round, its profile, its dataset size (not covered by ε)",
    "none": "no protection: a value computed from the device's data, released as is",
}
UNCOVERED = ("none", UNDECLARED)


def field_name(record: str, key: str | None = None) -> str:
    return record if key is None else f"{record}.{key}"


def declaration(fields: Mapping[str, str]) -> dict[str, str]:
    """Check a device's declaration: every mechanism must be one of MECHANISMS."""
    unknown = {f: m for f, m in fields.items() if m not in MECHANISMS}
    if unknown:
        raise ValueError(f"unknown release mechanisms: {unknown}")
    return dict(fields)


def released_fields(content: Mapping[str, object], records: Iterable[str] | None = None) -> dict[str, str]:
    """field -> declared mechanism for everything a reply's RecordDict holds (`content`)."""
    from flwr.app import ArrayRecord

    declared = content.get(DECLARATION) if hasattr(content, "get") else None
    declared = {str(k): str(v) for k, v in declared.items()} if declared is not None else {}
    fields: dict[str, str] = {}
    for name in records if records is not None else list(content.keys()):
        if name == DECLARATION:
            continue
        record = content[name]
        if isinstance(record, ArrayRecord):
            fields[name] = declared.get(name, UNDECLARED)
        else:
            for key in record.keys():
                fields[field_name(name, key)] = declared.get(field_name(name, key), UNDECLARED)
    return fields
