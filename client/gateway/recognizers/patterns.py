"""Deployment-specific patterns and deny-lists from the gateway config file (TOML), not code.

A hospital declares its MRN format or its ward names in ``[[patterns]]`` / ``[[deny_lists]]``
tables (see ``default_patterns.toml``); each becomes a Presidio ``PatternRecognizer``.
"""

from __future__ import annotations

import regex

from presidio_analyzer import Pattern, PatternRecognizer


def recognizers(config) -> list[PatternRecognizer]:
    out: list[PatternRecognizer] = []
    for spec in config.patterns:
        flags = regex.DOTALL | regex.MULTILINE | (0 if spec.case_sensitive else regex.IGNORECASE)
        out.append(
            PatternRecognizer(
                supported_entity=spec.entity,
                name=f"config:{spec.name}",
                patterns=[Pattern(name=spec.name, regex=spec.regex, score=spec.score)],
                global_regex_flags=flags,
            )
        )
    for spec in config.deny_lists:
        flags = regex.DOTALL | regex.MULTILINE | (0 if spec.case_sensitive else regex.IGNORECASE)
        out.append(
            PatternRecognizer(
                supported_entity=spec.entity,
                name=f"config:{spec.name}",
                deny_list=list(spec.terms),
                deny_list_score=spec.score,
                global_regex_flags=flags,
            )
        )
    return out
