"""Text normalization before detection, with every normalized character mapped back to the original.

Hostile or sloppy text hides identifiers from patterns written for plain ASCII: an SSN written with
an en dash, a minus sign or a non-breaking hyphen; digits in full-width or mathematical forms; a
zero-width space inside a number; "jane (dot) doe (at) example (dot) com". Detection therefore runs
on a normalized copy:

* Unicode compatibility forms (NFKC), applied per grapheme cluster (a base character with its
  combining marks) so that each normalized character still points at the original characters it
  came from;
* every dash and minus variant -> "-", every space variant -> " ", invisible format characters
  (zero-width spaces and joiners, soft hyphen, BOM) removed;
* spelled-out separators: "(dot)", "[dot]", "{at}", "(at)" ... -> "." / "@", and a spelled-out
  e-mail address ("jane dot doe at example dot com") -> its written form.

``Normalized.span(start, end)`` maps a span of the normalized text back to the original text, so
entities keep offsets into what the user wrote.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\u2796\ufe58\ufe63\uff0d\u02d7\u2e3a\u2e3b"
_DASH_TABLE = {ord(c): "-" for c in DASHES}
_SPECIAL = re.compile("[" + re.escape(DASHES) + "\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff\u00ad\u180e]")
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u2061\u2062\u2063\u2064")
# bracketed spelled-out separators; the brackets make them unambiguous in running text
_SPELLED = re.compile(r"\s*[\(\[\{<]\s*(dot|period|at)\s*[\)\]\}>]\s*", re.IGNORECASE)
_TLD = r"(?:com|org|net|edu|gov|mil|io|co|us|uk|ca|de|fr|es|it|nl|au|in|info|biz|me|ch|se|no|dk|fi|pl|br|mx|jp|eu|ie|be|at|pt|nz)"
# "jane dot doe at example dot com" (unbracketed: only in the full shape of an address)
_SPELLED_EMAIL = re.compile(
    r"\b[\w+-]+(?:\s+dot\s+[\w+-]+)*\s+at\s+[\w-]+(?:\s+dot\s+[\w-]+)*\s+dot\s+" + _TLD + r"\b", re.IGNORECASE
)
_SPELLED_WORD = re.compile(r"\s+(dot|at)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Normalized:
    text: str
    starts: Sequence[int]  # starts[i]: index in the original of the cluster normalized char i came from
    ends: Sequence[int]  # ends[i]: end (exclusive) in the original of that cluster
    original_length: int

    @property
    def changed(self) -> bool:
        if isinstance(self.starts, range):
            return False
        return len(self.starts) != self.original_length or any(s != i for i, s in enumerate(self.starts))

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span covering normalized [start, end)."""
        if end <= start:
            pos = self.starts[start] if start < len(self.starts) else self.original_length
            return pos, pos
        return self.starts[start], self.ends[end - 1]


def normalize(text: str) -> Normalized:
    n = len(text)
    # already NFKC with no dash, space or invisible variant (all ASCII text, most accented text)
    if text.isascii() or (unicodedata.is_normalized("NFKC", text) and not _SPECIAL.search(text)):
        result = Normalized(text, range(n), range(1, n + 1), n)
        result = _rewrite(result, _SPELLED, lambda m: "." if m.group(1).lower() in ("dot", "period") else "@")
        return _rewrite_spelled_emails(result)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def emit(chunk: str, start: int, end: int) -> None:
        for ch in chunk:
            out.append(ch)
            starts.append(start)
            ends.append(end)

    i = 0
    plain = True
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        cluster = text[i:j]
        if cluster in _INVISIBLE:
            plain = False
        elif cluster.isascii():
            emit(cluster, i, j)
        else:
            plain = False
            folded = unicodedata.normalize("NFKC", cluster.translate(_DASH_TABLE)).translate(_DASH_TABLE)
            folded = "".join(" " if unicodedata.category(c) == "Zs" else c for c in folded if c not in _INVISIBLE)
            emit(folded, i, j)
        i = j
    if plain:
        result = Normalized(text, range(n), range(1, n + 1), n)
    else:
        result = Normalized("".join(out), tuple(starts), tuple(ends), n)
    result = _rewrite(result, _SPELLED, lambda m: "." if m.group(1).lower() in ("dot", "period") else "@")
    result = _rewrite_spelled_emails(result)
    return result


def _rewrite(norm: Normalized, pattern: re.Pattern, repl) -> Normalized:
    """Replace each match of `pattern` in the normalized text by `repl(match)`; the replacement's
    characters map to the original span of the whole match."""
    if not pattern.search(norm.text):
        return norm
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for m in pattern.finditer(norm.text):
        out.append(norm.text[pos : m.start()])
        starts.extend(norm.starts[pos : m.start()])
        ends.extend(norm.ends[pos : m.start()])
        new = repl(m)
        o_start, o_end = norm.span(m.start(), m.end())
        out.append(new)
        starts.extend([o_start] * len(new))
        ends.extend([o_end] * len(new))
        pos = m.end()
    out.append(norm.text[pos:])
    starts.extend(norm.starts[pos:])
    ends.extend(norm.ends[pos:])
    return Normalized("".join(out), tuple(starts), tuple(ends), norm.original_length)


def _rewrite_spelled_emails(norm: Normalized) -> Normalized:
    matches = list(_SPELLED_EMAIL.finditer(norm.text))
    if not matches:
        return norm
    for m in reversed(matches):  # right to left: earlier offsets stay valid
        inner = _rewrite(
            Normalized(m.group(), norm.starts[m.start() : m.end()], norm.ends[m.start() : m.end()], norm.original_length),
            _SPELLED_WORD,
            lambda w: "." if w.group(1).lower() == "dot" else "@",
        )
        norm = Normalized(
            norm.text[: m.start()] + inner.text + norm.text[m.end() :],
            tuple(norm.starts[: m.start()]) + tuple(inner.starts) + tuple(norm.starts[m.end() :]),
            tuple(norm.ends[: m.start()]) + tuple(inner.ends) + tuple(norm.ends[m.end() :]),
            norm.original_length,
        )
    return norm
