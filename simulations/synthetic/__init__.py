"""Deterministic synthetic data for fedpriv simulations.

* :func:`generate_federation` — non-IID client corpora for two profiles:
  ``hospital`` (few clients, one department each: cardiology, oncology, pediatrics, ...) and
  ``phone`` (many clients, one texting style each). About 30% of records carry realistic fake
  identifiers (names, MRNs, phone numbers, dates, addresses, emails).
* :func:`generate_federation_records` — the same records with PII ground truth (type + offsets).
* :func:`public_corpus` / :func:`public_split` — generic text of both domains (no client styles)
  used to pretrain the default model, with a held-out split.

Same arguments (including ``seed``) always give identical output; different seeds differ.
"""

from simulations.synthetic.common import PIISpan, Record
from simulations.synthetic.federation import (
    DEFAULT_HELDOUT_FRACTION,
    DEFAULT_NUM_CLIENTS,
    DEFAULT_PII_FRACTION,
    DEFAULT_PUBLIC_RECORDS,
    PROFILES,
    client_ids,
    generate_federation,
    generate_federation_records,
    public_corpus,
    public_split,
    read_federation,
    write_federation,
)
from simulations.synthetic.hospital import SPECIALTY_NAMES
from simulations.synthetic.pii import PII_TYPES

__all__ = [
    "DEFAULT_HELDOUT_FRACTION",
    "DEFAULT_NUM_CLIENTS",
    "DEFAULT_PII_FRACTION",
    "DEFAULT_PUBLIC_RECORDS",
    "PII_TYPES",
    "PROFILES",
    "SPECIALTY_NAMES",
    "PIISpan",
    "Record",
    "client_ids",
    "generate_federation",
    "generate_federation_records",
    "public_corpus",
    "public_split",
    "read_federation",
    "write_federation",
]
