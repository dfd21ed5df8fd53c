"""Detector families plugged into Presidio's AnalyzerEngine through one registry.

Each module is one family and exposes ``recognizers(config) -> list[EntityRecognizer]``:

========== ==========================================================================
family     entities
========== ==========================================================================
patterns   deployment patterns / deny-lists from the TOML config (MRN formats, wards)
ids        EMAIL URL IP_ADDRESS PHONE FAX SSN CREDIT_CARD IBAN MRN HEALTH_PLAN ACCOUNT
           LICENSE VEHICLE DEVICE ID
dates_ages DATE AGE
addresses  ADDRESS LOCATION ZIP
names      PERSON LOCATION FACILITY
ner        PERSON LOCATION ADDRESS (a spaCy NER model, off unless configured)
========== ==========================================================================

To add a family: write a module with ``recognizers(config)`` and add it to ``FAMILIES``.
"""

from __future__ import annotations

import importlib
import os
import sys


def import_presidio_without_torch() -> None:
    """Import presidio_analyzer without torch and transformers (7 of its 8 s of import time).

    Presidio treats both as optional: its transformers NLP engine does ``try: from transformers
    import ...``, its device detector skips torch when ``PRESIDIO_DEVICE`` is set, and spaCy's
    thinc does ``try: import torch``. The gateway uses neither (blank spaCy tokenizer, its own
    recognizers), so while Presidio is imported both names are marked absent in ``sys.modules``
    (``import`` then raises ImportError, the optional path); the marks are removed afterwards, so
    later code (the local model) imports them normally. Nothing is blocked when they are loaded
    already."""
    if "presidio_analyzer" in sys.modules:
        return
    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    blocked = [name for name in ("transformers", "torch") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import presidio_analyzer  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


import_presidio_without_torch()

from presidio_analyzer import EntityRecognizer, RecognizerRegistry  # noqa: E402

FAMILIES: dict[str, str] = {
    "patterns": "client.gateway.recognizers.patterns",
    "ids": "client.gateway.recognizers.ids",
    "dates_ages": "client.gateway.recognizers.dates_ages",
    "addresses": "client.gateway.recognizers.addresses",
    "names": "client.gateway.recognizers.names",
    "ner": "client.gateway.recognizers.ner",  # only with [detection] ner_model set
}


def build_recognizers(config) -> list[EntityRecognizer]:
    out: list[EntityRecognizer] = []
    for family, module_name in FAMILIES.items():
        if family in config.disabled_families:
            continue
        out.extend(importlib.import_module(module_name).recognizers(config))
    return out


def build_registry(config) -> RecognizerRegistry:
    return RecognizerRegistry(recognizers=build_recognizers(config), supported_languages=["en"])
