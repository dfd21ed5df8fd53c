"""Small helpers shared by the synthetic generators (seeding, template filling, records)."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

Slot = Sequence[str] | Callable[[random.Random], str]


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 64-bit seed for a sub-stream (independent of PYTHONHASHSEED and of call order)."""
    digest = hashlib.sha256(repr((int(seed), *parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def sub_rng(seed: int, *parts: object) -> random.Random:
    return random.Random(derive_seed(seed, *parts))


@dataclass(frozen=True)
class PIISpan:
    """Ground truth for one identifier planted in a record (offsets into ``Record.text``).

    ``type`` uses the gateway's entity names: PERSON, MRN, PHONE, DATE, LOCATION, EMAIL.
    """

    type: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Record:
    text: str
    pii: tuple[PIISpan, ...] = field(default=())

    @property
    def has_pii(self) -> bool:
        return bool(self.pii)


_SLOT_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_TRAILING_DIGITS = re.compile(r"\d+$")


class Filler:
    """Fills ``{slot}`` / ``{slot2}`` templates from vocab lists or generator callables.

    ``{med}`` and ``{med2}`` draw independently from the ``med`` vocabulary (retrying to avoid
    an identical pick); a repeated ``{med}`` in the same template gets the same value.
    """

    def __init__(self, rng: random.Random, vocab: Mapping[str, Slot], *fallbacks: Mapping[str, Slot]):
        self.rng = rng
        self.layers = (vocab, *fallbacks)

    def _lookup(self, name: str) -> Slot:
        for candidate in (name, _TRAILING_DIGITS.sub("", name)):
            for layer in self.layers:
                if candidate in layer:
                    return layer[candidate]
        raise KeyError(f"no vocabulary for template slot {{{name}}}")

    def draw(self, name: str) -> str:
        return self._draw(self._lookup(name))

    def _draw(self, slot: Slot) -> str:
        if callable(slot):
            return slot(self.rng)
        return self.rng.choice(slot)

    def fill(self, template: str) -> str:
        chosen: dict[str, str] = {}
        used: dict[str, set[str]] = {}

        def repl(match: re.Match[str]) -> str:
            key = match.group(0)
            if key in chosen:
                return chosen[key]
            name = match.group(1)
            slot = self._lookup(name)
            seen = used.setdefault(str(id(slot)), set())
            value = self._draw(slot)
            for _ in range(3):
                if value not in seen:
                    break
                value = self._draw(slot)
            seen.add(value)
            # Values may themselves contain slots (nested vocab such as "{med} {dose}").
            if "{" in value:
                value = self.fill(value)
            chosen[key] = value
            return value

        return _SLOT_RE.sub(repl, template)


def word_count(text: str) -> int:
    return len(text.split())


def locate_spans(text: str, planted: Sequence[tuple[str, str]]) -> tuple[PIISpan, ...]:
    """Offsets of every occurrence of every planted (type, value); sorted, de-duplicated."""
    spans: set[PIISpan] = set()
    for kind, value in planted:
        if not value:
            continue
        start = text.find(value)
        while start != -1:
            end = start + len(value)
            # Whole-token matches only ("Al" must not match inside "Also").
            if (start == 0 or not text[start - 1].isalnum()) and (end == len(text) or not text[end].isalnum()):
                spans.add(PIISpan(kind, start, end, value))
            start = text.find(value, start + 1)
    return tuple(sorted(spans, key=lambda s: (s.start, s.end, s.type)))


def squeeze_spaces(text: str) -> str:
    """Collapse runs of spaces (not newlines) and trim; tidy spaces before punctuation."""
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([,.;:!?])", r"\1", text)
    text = re.sub(r" *\n *", "\n", text)
    return text.strip()
