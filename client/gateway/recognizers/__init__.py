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


from client.gateway.lean_import import import_presidio_lean  # noqa: E402

import_presidio_lean()

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
