"""Span grammar: what the detected spans imply about the words around them.

The recognizers look at a prompt one pattern at a time; some identifiers only show once the
others are known. ``refine(text, spans)`` runs after the union merge:

* a name continues over the adjacent words that are not ordinary English words, in any case
  ("[PERSON] vasquez", "ásthildur [PERSON]"): the surname or first name left next to a
  placeholder is the failure this prevents;
* a bare number after a name between commas is that person's age ("Walter Kask, 93, ..."), so it
  is generalized like any age (over 89 -> "90 or older", as HIPAA Safe Harbor requires);
* an address takes in its house number and the street name next to it, wherever the country puts
  them ("Schulstrasse 59", "26 Xyz\\nApt. 324"), and a short line of names inside an address block
  (between or next to lines holding a street or a postcode) is a place.

``truecase(text)`` prepares all-lower-case and all-capitals prompts for detection: every word
that is not an ordinary English word is capitalized (and sentence starts), so the name and address
rules see "tell Ásthildur Giannotti ..." instead of "tell ásthildur giannotti ...". It changes no
length, so offsets stay valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from client.gateway.recognizers.common import (
    COUNTRIES,
    NON_PII_CAPITALIZED,
    PERSON_CUES,
    PERSON_FOLLOWERS,
    TITLES,
    first_names,
    is_common_word,
    last_names,
)


@dataclass(frozen=True)
class Span:
    type: str
    start: int
    end: int
    score: float


_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_AGE_AFTER = re.compile(r"\s*,\s*(\d{1,3})(?=\s*(?:,|\.|;|\)|$|\n|\s+(?:and|from|who|with|is|was|lives|has|years?|yrs?)\b))")
_HOUSE_NO = r"\d{1,5}[a-zA-Z]?(?:[/-]\d{1,4}[a-zA-Z]?)?"
_NUMBER_AFTER = re.compile(r",?[ \t]?(" + _HOUSE_NO + r")(?![\w/.,]\d)(?![\w])")
_NUMBER_BEFORE = re.compile(r"(?<![\w/.,-])(" + _HOUSE_NO + r"),?[ \t]$")
_ADDRESS_CONTEXT = ("ADDRESS", "ZIP", "LOCATION", "PERSON")
_AT_BEFORE = re.compile(r"(?i:\b(?:at|on|in|to|from|of|near|address|is|lives)\s)$")
_NOT_HOUSE_UNIT = re.compile(r"\s*(?i:years?|yrs?|kg|lbs?|%|percent|am|pm|a\.m|p\.m|minutes?|hours?|days?|weeks?|times|mg|ml|o'clock)\b")
_CITY_AFTER_ADDRESS = re.compile(r",[ \t]+((?:[^\W\d_a-z][\w'’-]*)(?:[ -][^\W\d_a-z][\w'’-]*){0,2})(?=[ \t]*(?:,|$|\n|\d| [A-Z]{2}\b))")
_NOT_NAME = frozenset({"and", "or", "the", "of", "to", "for", "with", "from", "at", "in", "on", "by"})


_STOP = frozenset(__import__("spacy.lang.en.stop_words", fromlist=["STOP_WORDS"]).STOP_WORDS)


def _name_like(word: str, beside_name: bool = False) -> bool:
    """Not an ordinary English word; next to a detected name, also a known first or last name
    that is one ("jenny", "heath"), unless it is a function word."""
    low = word.lower()
    known = beside_name and low not in _STOP and (low in first_names() or low in last_names())
    return (
        len(word) >= 2
        and (known or not is_common_word(low))
        and low not in _NOT_NAME
        and low not in PERSON_CUES
        and low not in TITLES
        and low not in NON_PII_CAPITALIZED
    )


_VERBISH = re.compile(r"(?:ed|ing|ly|s)$")
_INITIAL = re.compile(r"[^\W\d_]\.[ \t]")
_INITIAL_BEFORE = re.compile(r"(?<![\w])([^\W\d_]{2,}(?:['’-][^\W\d_]+)*)[ \t][^\W\d_]\.[ \t]$")
_BARE_CODE = re.compile(r"[ \t]*,?[ \t]*(\d{3,6})(?![\w.,/]\d|\w)(?!\s*(?i:years?|yrs?|kg|lbs?|%|percent|am|pm|minutes?|hours?|days?|times|mg|ml)\b)")


def _caseless_name_part(word: str) -> bool:
    """In a caseless prompt a surname can be any word: next to a name take one that is not a
    function word, a person cue or follower, or shaped like a verb or adverb."""
    low = word.lower()
    return len(low) >= 2 and low not in _STOP and low not in PERSON_FOLLOWERS and low not in PERSON_CUES \
        and low not in TITLES and low not in NON_PII_CAPITALIZED and not _VERBISH.search(low)


def _extend_person(text: str, span: Span, caseless: bool = False) -> Span:
    start, end = span.start, span.end
    for k in range(2):  # forward: "[PERSON] vasquez"
        m = re.compile(r"[ -]").match(text, end)
        if not m:
            break
        initial = _INITIAL.match(text, m.end())  # "[PERSON] A. Hides", "[PERSON] v. Michek": the word after
        after = _WORD.match(text, initial.end()) if initial else None  # a middle initial is a surname
        if after and len(after.group()) >= 2 and after.group().lower() not in _STOP:
            end = after.end()
            continue
        w = _WORD.match(text, m.end())
        if not w or w.group()[0].isdigit():
            break
        if not (_name_like(w.group(), beside_name=True) or (caseless and k == 0 and _caseless_name_part(w.group()))):
            break
        end = w.end()
    back = _INITIAL_BEFORE.search(text, max(0, start - 40), start)  # "Držislav A. [PERSON]"
    if back and _name_like(back.group(1), True):
        start = back.start(1)
    for _ in range(2):  # backward: "ásthildur [PERSON]"
        if start < 2 or text[start - 1] not in " -" or text[start - 2] in ".!?\n":
            break
        w = None
        for cand in _WORD.finditer(text, max(0, start - 40), start - 1):
            if cand.end() == start - 1:
                w = cand
        if w is None or not _name_like(w.group(), beside_name=True):
            break
        start = w.start()
    return Span(span.type, start, end, span.score) if (start, end) != (span.start, span.end) else span


def refine(text: str, spans: list[Span], caseless: bool = False) -> list[Span]:
    """Spans extended and added by the grammar above (the caller merges overlaps again).
    `caseless`: the prompt was all lower case or all capitals (see ``truecase``)."""
    out = list(spans)
    types_at = sorted(spans, key=lambda s: s.start)
    for k, span in enumerate(types_at):
        aged = False
        if span.type == "PERSON":
            out.append(_extend_person(text, span, caseless))
            m = _AGE_AFTER.match(text, span.end)
            if m and 1 <= int(m.group(1)) <= 125:
                out.append(Span("AGE", m.start(1), m.end(1), 0.9))
                aged = True
        nxt = types_at[k + 1] if k + 1 < len(types_at) else None
        gap_after = text[span.end : nxt.start] if nxt is not None else text[span.end : span.end + 12]
        near_address = (nxt is not None and nxt.type in _ADDRESS_CONTEXT and len(gap_after) <= 4) or bool(
            re.match(r",?[ \t]*(?:\n|$)", text[span.end :])
        )
        after_prep = bool(_AT_BEFORE.search(text[max(0, span.start - 9) : span.start]))
        if span.type in ("PERSON", "LOCATION", "ADDRESS") and not aged:
            m = _NUMBER_AFTER.match(text, span.end)
            if m and not _NOT_HOUSE_UNIT.match(text, m.end()) and (
                span.type == "ADDRESS" or after_prep or (near_address and re.match(r"\s*(?:,|\n|$)", text[m.end() :]))
                or re.match(r"\s*(?:,|\n)", text[m.end() :]) and "," in text[span.end : m.start(1) + 1]
            ):
                out.append(Span("ADDRESS", span.start, m.end(1), max(span.score, 0.9)))
        if span.type in ("LOCATION", "ADDRESS"):  # "[ADDRESS], [LOCATION] 8834": a postcode beside the city
            code = _BARE_CODE.match(text, span.end)
            prev = types_at[k - 1] if k else None
            if code and not (len(code.group(1)) == 4 and 1950 <= int(code.group(1)) <= 2035) and (
                span.type == "ADDRESS" or (prev is not None and prev.type == "ADDRESS" and span.start - prev.end <= 4)
            ):
                out.append(Span("ZIP", code.start(1), code.end(1), 0.8))
        if span.type == "ADDRESS":
            c = _CITY_AFTER_ADDRESS.match(text, span.end)
            if c and c.group(1).casefold() not in COUNTRIES and not is_common_word(c.group(1).split()[0]):
                out.append(Span("LOCATION", c.start(1), c.end(1), 0.7))
        if span.type in ("PERSON", "LOCATION") and re.match(r"[ \t]*(?:,|\n)", text[span.end :]):
            near_address = True
        if span.type == "ADDRESS" or (span.type in ("PERSON", "LOCATION") and near_address):
            window = max(0, span.start - 12)
            before = _NUMBER_BEFORE.search(text[window : span.start])
            if before and (span.type == "ADDRESS" or near_address):
                out.append(Span("ADDRESS", window + before.start(1), span.end, max(span.score, 0.9)))
    out.extend(_address_block_places(text, spans))
    return out


def _address_block_places(text: str, spans: list[Span]) -> list[Span]:
    """Short all-name lines inside an address block (next to a line with a street or postcode)."""
    if "\n" not in text:
        return []
    lines = []
    pos = 0
    for line in text.split("\n"):
        lines.append((pos, pos + len(line), line))
        pos += len(line) + 1
    anchored = set()
    for i, (a, b, _) in enumerate(lines):
        if any(s.type in ("ADDRESS", "ZIP") and s.start < b and s.end > a for s in spans):
            anchored.add(i)
    out = []
    for i, (a, b, line) in enumerate(lines):
        if i in anchored or not ({i - 1, i + 1} & anchored):
            continue
        stripped = line.strip(" \t>,")
        words = _WORD.findall(stripped)
        if not words or len(words) > 4 or any(s.start < b and s.end > a for s in spans):
            continue
        if re.fullmatch(r"[^\W\d_][\w'’.\- ]*", stripped) and all(w[0].isupper() for w in words) and any(_name_like(w) for w in words):
            start = a + line.index(stripped)
            out.append(Span("LOCATION", start, start + len(stripped), 0.6))
    return out


def truecase(text: str) -> str:
    """All-lower-case or all-capitals text with its likely proper nouns capitalized (same length)."""
    letters = sum(map(str.isalpha, text))
    if letters < 8:
        return text
    upper = sum(map(str.isupper, text))
    if 0.02 < upper / letters < 0.8:
        return text
    chars = list(text)
    sentence_start = True
    for m in re.finditer(r"[^\W\d_]+(?:['’][^\W\d_]+)?|[.!?\n:;|>]", text):
        token = m.group()
        if not token[0].isalpha():
            sentence_start = True
            continue
        low = token.lower()
        if len(low) != len(token):
            sentence_start = False
            continue
        initial = len(low) == 1 and text[m.end() : m.end() + 1] == "."
        cap = sentence_start or initial or (len(low) >= 2 and not is_common_word(low) and low not in _NOT_NAME)
        new = (low[0].upper() + low[1:]) if cap else low
        if low == "i":
            new = "I"
        if len(new) == len(token):
            chars[m.start() : m.end()] = list(new)
        sentence_start = False
    return "".join(chars)
