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

from types import ModuleType

from client.gateway.lean_import import import_presidio_lean

import_presidio_lean()  # before anything imports Presidio: without torch and transformers

from presidio_analyzer import EntityRecognizer, RecognizerRegistry  # noqa: E402

from client.gateway.recognizers import addresses, dates_ages, ids, names, ner, patterns  # noqa: E402

# Imported in the source (not by name through importlib) so the import graph stays visible.
FAMILIES: dict[str, ModuleType] = {
    "patterns": patterns,
    "ids": ids,
    "dates_ages": dates_ages,
    "addresses": addresses,
    "names": names,
    "ner": ner,  # only with [detection] ner_model set
}


def build_recognizers(config) -> list[EntityRecognizer]:
    out: list[EntityRecognizer] = []
    for family, module in FAMILIES.items():
        if family in config.disabled_families:
            continue
        out.extend(module.recognizers(config))
    return out


def build_registry(config) -> RecognizerRegistry:
    return RecognizerRegistry(recognizers=build_recognizers(config), supported_languages=["en"])
