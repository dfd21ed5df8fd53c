"""Person names, places and facilities named by capitalized words, without an NER model.

Offline detector built from three signals, none of which needs a trained model:

* gazetteers: first/last names (Faker's lists for ~30 locales, minus a held-out quarter) and US
  places (GeoNames, minus a held-out quarter);
* context: titles (Dr., Mrs., Nurse ...), relation and role words ("my daughter", "patient",
  "landlord"), introductions ("my name is", "I'm", "this is"), greetings/sign-offs, place
  prepositions ("lives in", "moved to"), and verbs that follow a person ("X said", "X's");
* word shape vs a 80k-word English lexicon: a capitalized word in the middle of a sentence that is
  not an ordinary English word nor a known non-identifying proper noun (months, drugs, eponyms,
  nationalities, payers, apps ...) is treated as a name.

Every name token found is then propagated to its other mentions in the text (so "Zofia Wrona ...
Wrona said" loses both), and the sanitizer adds names already seen in the conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from client.gateway.recognizers.common import (
    ABBREVIATIONS,
    COUNTRIES,
    DRUG_SUFFIXES,
    FACILITY_WORDS,
    MONTHS,
    NAME_PARTICLES,
    NON_PII_CAPITALIZED,
    PERSON_CUES,
    PERSON_FOLLOWERS,
    PLACE_CUES,
    PLACE_PREFIXES,
    STATE_NAMES,
    STRONG_PLACE_CUES,
    TITLES,
    US_STATES,
    WEEKDAYS,
    GatewayRecognizer,
    Hit,
    first_names,
    is_common_word,
    last_names,
    us_places,
)

_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*\.?")
_POSSESSIVE = re.compile(r"['’]s?$")
_SENTENCE_END = ".!?"
_CLAUSE_START = "\n\r:;•*([{\"“‘>|"
_SKIP_BEFORE_CUE = {"my", "our", "his", "her", "their", "your", "the", "a", "an", "dear", "new", "old", "late", "former", "beloved", "younger", "older", "little", "big", "best", "good", "favorite", "favourite"}
_INTRO_PHRASES = (("my", "name", "is"), ("name", "is"), ("i", "am"), ("i'm",), ("im",), ("this", "is"), ("call", "me"), ("it's",), ("its",), ("speaking", "with"), ("talked", "to"), ("spoke", "with"), ("met", "with"), ("ask",), ("tell",), ("told",), ("meet",), ("text",), ("email",), ("call",), ("message",), ("thank",), ("remind",), ("invite",), ("congratulate",))
_CAPS_LAST_FIRST = re.compile(r"(?<![\w-])([^\W\d_a-z]{2,}(?:[-'’][^\W\d_a-z]+)?),\s+([^\W\d_a-z]{2,}(?:[-'’][^\W\d_a-z]+)?)(?![\w-])")
_IMPERATIVE_CUES = {"tell", "ask", "call", "text", "email", "remind", "thank", "message", "invite", "congratulate", "let", "help", "introduce", "cc", "forward", "notify", "inform", "page", "contact", "wish", "greet", "hug", "pay", "bring", "send", "show", "give"}
_NAME_LIKE_MONTHS = {"may", "june", "april", "august", "january", "summer", "autumn", "winter", "christian", "eve"}
# non-identifying words that are also common surnames ("Elíana West", "Ada Graves")
_SURNAME_LIKE = {"west", "north", "south", "east", "black", "white", "brown", "graves", "turner", "bell", "lord", "down", "wilson", "barr", "christian", "english", "french", "irish", "german", "lyme", "huntington", "addison", "marfan", "cushing", "paget", "jordan", "israel", "chad", "georgia", "victoria", "lady", "pepper", "target", "blue", "cross", "best", "love", "may", "june", "april", "august"}
_FUNCTION_WORDS = {w for w in __import__("spacy.lang.en.stop_words", fromlist=["STOP_WORDS"]).STOP_WORDS if w.isalpha()} - {"will", "may", "bill", "rose", "june", "mark", "grace", "hope", "amen", "sue", "don"}
_SIGN_OFFS = {"regards", "sincerely", "thanks", "cheers", "best", "love", "warmly", "yours", "respectfully", "wishes", "xoxo", "hugs"}
_STRONG_LOWER_CUES = {"named", "name", "name's", "called", "dr", "dr.", "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "patient", "pt", "pt."}
_PERSON_PREFIX_BLOCK = {"covid", "type", "stage", "grade", "vitamin", "hepatitis", "class", "level", "phase", "room", "bed", "floor", "building", "suite", "route", "highway", "exit", "gate", "terminal", "lot"}


@dataclass
class _Tok:
    start: int
    end: int  # end of the name part (possessive and trailing period stripped)
    text: str  # name part
    low: str
    cap: bool
    caps: bool
    initial: bool
    possessive: bool
    period: bool
    sent_init: bool = False
    clause_init: bool = False


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    for m in _WORD.finditer(text):
        raw = m.group()
        start, end = m.start(), m.end()
        period = raw.endswith(".")
        if period:
            raw = raw[:-1]
            end -= 1
        possessive = False
        pm = _POSSESSIVE.search(raw)
        if pm and len(raw) > 2 and pm.start() > 0 and raw[pm.start() - 1].isalpha() and (raw[-1] in "sS" or raw[-1] in "'’"):
            if raw[-2:] in ("'s", "’s") or raw[-1] in "'’":
                possessive = True
                cut = len(raw) - pm.start()
                raw = raw[: pm.start()]
                end -= cut
        if not raw:
            continue
        first = raw[0]
        cap = first.isupper()
        caps = raw.isupper() and len(raw) > 1
        initial = len(raw) == 1 and cap and period
        toks.append(_Tok(start, end, raw, raw.lower(), cap, caps, initial, possessive, period))
    # sentence / clause starts
    prev: _Tok | None = None
    for tok in toks:
        i = tok.start - 1
        while i >= 0 and text[i] in " \t\"'“”‘’":
            i -= 1
        if i < 0:
            tok.sent_init = True
        else:
            ch = text[i]
            if ch in _SENTENCE_END:
                if ch == "." and prev is not None and prev.period and prev.end + 1 > i - 1 and (
                    prev.low in ABBREVIATIONS or prev.initial or prev.low in TITLES
                ):
                    pass  # "Dr. Smith", "J. Smith", "St. Louis"
                else:
                    tok.sent_init = True
            elif ch in "\n\r•*>|" or (ch in "-–—" and (i == 0 or text[i - 1] in "\n ")):
                tok.sent_init = True
            elif ch in _CLAUSE_START:
                tok.clause_init = True
        prev = tok
    return toks


def _gap(text: str, a: _Tok, b: _Tok) -> str:
    return text[a.end : b.start]


class GatewayProperNameRecognizer(GatewayRecognizer):
    """PERSON / LOCATION / FACILITY from capitalized-word chunks, gazetteers and context."""

    ENTITIES = ("PERSON", "LOCATION", "FACILITY")

    def __init__(self) -> None:
        super().__init__(name="GatewayProperNameRecognizer")
        self.first = first_names()
        self.last = last_names()
        self.places = us_places()

    # --- token predicates -------------------------------------------------------------------
    def _known_name(self, low: str) -> bool:
        return low in self.first or low in self.last

    @staticmethod
    def _non_pii(low: str) -> bool:
        return low in NON_PII_CAPITALIZED or low in MONTHS or low in WEEKDAYS or low in COUNTRIES or low in STATE_NAMES

    def find(self, text: str):
        toks = _tokenize(text)
        if not toks:
            return []
        hits: list[Hit] = []
        covered = [False] * len(toks)
        person_words: set[str] = set()
        place_words: set[str] = set()

        chunks = self._chunks(text, toks)
        for lo, hi in chunks:
            label, score, lo2, hi2 = self._classify(text, toks, lo, hi)
            if label is None:
                continue
            for k in range(lo2, hi2):
                covered[k] = True
            hits.append((label, toks[lo2].start, toks[hi2 - 1].end, score))
            if label == "PERSON":
                for k in range(lo2, hi2):
                    t = toks[k]
                    if len(t.text) >= 2 and t.low not in NAME_PARTICLES and t.low not in TITLES:
                        person_words.add(t.text)
            elif label == "LOCATION":
                place_words.add(text[toks[lo2].start : toks[hi2 - 1].end])

        # lower-case names right after strong cues ("my name is zofia wrona", "dr kowalski")
        for idx, tok in enumerate(toks):
            if covered[idx] or tok.cap:
                continue
            if self._lower_name_after_cue(toks, idx):
                end_idx = idx + 1
                if end_idx < len(toks) and not toks[end_idx].cap and _gap(text, tok, toks[end_idx]) == " " and (
                    toks[end_idx].low in self.last and not is_common_word(toks[end_idx].low)
                ):
                    end_idx += 1
                for k in range(idx, end_idx):
                    covered[k] = True
                    person_words.add(toks[k].text)
                hits.append(("PERSON", tok.start, toks[end_idx - 1].end, 0.7))

        # "LAST, FIRST" in capitals (chart headers)
        if ", " in text:
            for m in _CAPS_LAST_FIRST.finditer(text):
                a, b = m.group(1), m.group(2)
                ok = [len(w) >= 3 and not self._non_pii(w.lower()) and (self._known_name(w.lower()) or not is_common_word(w.lower())) for w in (a, b)]
                ctx = bool(re.search(r"(?:\b(?:for|patient|pt|name|re|resident|client)\s*:?\s*|^|\n)$", text[max(0, m.start() - 12) : m.start()], re.IGNORECASE)) or text[m.end() : m.end() + 1] == ":"
                strong = all(ok) and (any(self._known_name(w.lower()) for w in (a, b)) or min(len(a), len(b)) >= 4)
                if strong or (ctx and not any(self._non_pii(w.lower()) for w in (a, b)) and not all(is_common_word(w.lower()) for w in (a, b))):
                    hits.append(("PERSON", m.start(), m.end(), 0.75))
                    person_words.update((a, b))

        # propagate: other mentions of a name found above
        if person_words or place_words:
            for idx, tok in enumerate(toks):
                if covered[idx]:
                    continue
                if tok.text in person_words and (tok.cap or not is_common_word(tok.low)):
                    hits.append(("PERSON", tok.start, tok.end, 0.6))
                elif tok.cap and tok.text in place_words:
                    hits.append(("LOCATION", tok.start, tok.end, 0.6))
        return hits

    # --- chunking ---------------------------------------------------------------------------
    def _chunks(self, text: str, toks: list[_Tok]) -> list[tuple[int, int]]:
        chunks = []
        i, n = 0, len(toks)
        while i < n:
            tok = toks[i]
            if not tok.cap:
                i += 1
                continue
            j = i + 1
            while j < n:
                prev, cur = toks[j - 1], toks[j]
                gap = _gap(text, prev, cur)
                joined = gap == " " or (gap == ". " and prev.period and (prev.initial or prev.low in ABBREVIATIONS or prev.low in TITLES))
                if prev.possessive or not joined:
                    break
                if cur.cap:
                    j += 1
                    continue
                # lower-case particle between capitalized words: "Ludwig van Beethoven"
                if cur.low in NAME_PARTICLES and j + 1 < n and toks[j + 1].cap and _gap(text, cur, toks[j + 1]) == " ":
                    j += 2
                    continue
                break
            chunks.append((i, j))
            i = j
        return chunks

    def _prev_words(self, toks: list[_Tok], lo: int, text: str, limit: int = 4) -> list[str]:
        """Lower-cased words before toks[lo] inside the same sentence, nearest first."""
        out = []
        k = lo - 1
        while k >= 0 and len(out) < limit:
            t = toks[k]
            gap = text[t.end : toks[k + 1].start]
            if "\n" in gap and t.low in _SIGN_OFFS and gap.strip() in (",", "", "!", "-"):
                out.append(t.low)
                break
            if any(ch in gap for ch in ".!?\n") and not (gap.startswith(".") and t.period and (t.low in TITLES or t.low in ABBREVIATIONS)):
                break
            out.append(t.low + ("'s" if t.possessive else ""))
            k -= 1
        return out

    def _person_cue(self, prev: list[str]) -> bool:
        if not prev:
            return False
        words = [w for w in prev]
        # strip possessive/article fillers: "my best friend Zofia", "her son's teacher Mr. X"
        k = 0
        while k < len(words) and words[k] in _SKIP_BEFORE_CUE:
            k += 1
        head = words[k] if k < len(words) else ""
        first = words[0]
        if first in PERSON_CUES or first.rstrip(",:") in PERSON_CUES or first.endswith("'s") and first[:-2] in PERSON_CUES:
            return True
        if head in PERSON_CUES and k <= 1:
            return False if head in ("name",) and first != "name" else True
        for phrase in _INTRO_PHRASES:
            if tuple(reversed(words[: len(phrase)])) == phrase:
                return True
        return False

    def _lower_name_after_cue(self, toks: list[_Tok], idx: int) -> bool:
        tok = toks[idx]
        if idx == 0 or len(tok.low) < 2:
            return False
        prev = toks[idx - 1].low
        prev2 = toks[idx - 2].low if idx >= 2 else ""
        strong = prev in _STRONG_LOWER_CUES or (prev == "is" and prev2 == "name") or (prev in ("i'm", "im") and tok.low in self.first)
        if not strong and prev not in PERSON_CUES:
            return False
        if tok.low in self.first or tok.low in self.last:
            return strong or not is_common_word(tok.low)
        if is_common_word(tok.low) or tok.low in NON_PII_CAPITALIZED or len(tok.low) < 3:
            return False
        return (strong and prev in ("named", "is", "called")) or prev in PERSON_CUES

    # --- classification ---------------------------------------------------------------------
    def _classify(self, text: str, toks: list[_Tok], lo: int, hi: int):
        """Return (label, score, lo, hi) for the chunk toks[lo:hi], or (None, ...)."""
        # a sentence-opening imperative before a name ("Tell Mike ...", "Ask Zofia ...") is a cue;
        # another ordinary word is dropped before a known name/title/saint ("Visit St. Jude")
        imperative = False
        while hi - lo >= 2 and toks[lo].low in _FUNCTION_WORDS:
            lo += 1  # "Did Thorvald ...", "When Zofia ..."
        if hi - lo >= 2 and toks[lo].sent_init and not toks[lo].caps:
            first_low, nxt_low = toks[lo].low, toks[lo + 1].low
            if first_low in _IMPERATIVE_CUES:
                lo += 1
                imperative = True
            elif is_common_word(first_low) and not self._known_name(first_low) and first_low not in PERSON_CUES \
                    and first_low not in PLACE_PREFIXES and (
                        self._known_name(nxt_low) or nxt_low in TITLES or nxt_low in ("st", "saint", "mt", "mount", "fort", "ft")):
                lo += 1
        # strip titles at the front ("Dr. Anna Lee" -> "Anna Lee" with a title)
        titled = False
        while lo < hi and toks[lo].low in TITLES and (hi - lo > 1 or toks[lo].low in ("dr", "mr", "mrs", "ms")):
            if hi - lo == 1:
                return None, 0, lo, hi
            titled = True
            lo += 1
        # a capitalized cue word opening the chunk ("Patient John Smith", "Dear Anna", "Landlord Bob")
        cue_opened = False
        while lo < hi - 1 and toks[lo].low in PERSON_CUES and not self._known_name(toks[lo].low):
            cue_opened = True
            lo += 1
        prev = self._prev_words(toks, lo, text)
        person_cue = titled or cue_opened or imperative or self._person_cue(prev)
        # strip non-identifying words at both ends ("Tylenol", "Monday", "Emergency Department");
        # after a person cue only trailing ones ("Dear Barr Skinner")
        if not person_cue:
            while lo < hi and self._edge_strip(toks[lo]) and not (toks[lo].low in PLACE_PREFIXES and hi - lo > 1) and not (
                hi - lo > 1 and toks[lo].low in _NAME_LIKE_MONTHS and not self._non_pii(toks[lo + 1].low) and not is_common_word(toks[lo + 1].low)
            ):
                lo += 1
        while hi > lo and self._edge_strip(toks[hi - 1]) and not (person_cue and hi - lo == 1) and not (
            hi - lo >= 2 and toks[hi - 1].low in _SURNAME_LIKE and self._name_like(toks[hi - 2])
        ):
            hi -= 1
        while hi > lo and toks[hi - 1].low in NAME_PARTICLES:
            hi -= 1
        if lo >= hi:
            return None, 0, lo, hi
        chunk = toks[lo:hi]
        words = [t.low for t in chunk]
        phrase = text[chunk[0].start : chunk[-1].end]
        phrase_low = phrase.casefold()
        first_tok = chunk[0]
        if phrase_low in STATE_NAMES or phrase_low in COUNTRIES:
            return None, 0, lo, hi
        if all(len(w) == 1 for w in words):  # lone initials
            return None, 0, lo, hi
        if words[0] in _PERSON_PREFIX_BLOCK:
            return None, 0, lo, hi

        prev0 = prev[0] if prev else ""
        last = chunk[-1]
        nxt = toks[hi] if hi < len(toks) else None
        after = text[last.end : last.end + 4]
        followed_by_state = bool(re.match(r"\s*,\s*(?:" + "|".join(US_STATES) + r")\b", text[last.end : last.end + 6])) or bool(
            nxt is not None and after.lstrip().startswith(",") and text[nxt.start : nxt.start + 20].casefold().startswith(tuple(STATE_NAMES))
        )
        next_word = nxt.low if nxt is not None and not any(ch in text[last.end : nxt.start] for ch in ".!?\n") else ""
        person_follow = last.possessive or next_word in PERSON_FOLLOWERS

        sent_init = first_tok.sent_init
        place_cue = prev0 in PLACE_CUES and not person_cue
        strong_place_cue = any(w in STRONG_PLACE_CUES for w in prev[:2]) and not person_cue
        # facilities: "St. Jude Children's Hospital", "Riverside Family Clinic"
        if len(chunk) >= 2 and words[-1] in FACILITY_WORDS:
            if any(self._known_name(w) or w in self.places for w in words[:-1]) or not all(
                self._non_pii(w) or is_common_word(w) for w in words[:-1]
            ):
                return "FACILITY", 0.8, lo, hi
            if strong_place_cue and not sent_init:
                return "LOCATION", 0.6, lo, hi  # "visit Valley Center"
            return None, 0, lo, hi

        sig = [len(w) > 1 for w in words]  # single letters (initials) are neutral
        known = [self._known_name(w) and g for w, g in zip(words, sig)]
        common = [is_common_word(w) for w in words]
        nonpii = [self._non_pii(w) for w in words]
        unknown = [g and not (k or c or p) for k, c, p, g in zip(known, common, nonpii, sig)]
        place = self.places.get(phrase_low)
        all_caps = all(t.caps or len(t.text) == 1 for t in chunk)

        if person_cue and not (len(chunk) == 1 and nonpii[0] and not known[0] and not titled):
            return "PERSON", 0.85, lo, hi
        if followed_by_state and not (known[0] and len(chunk) >= 2):
            return "LOCATION", 0.85, lo, hi
        if place is not None and not (known[0] and len(chunk) >= 2 and not place_cue):
            if place_cue or not known[0] or len(chunk) >= 2:
                return "LOCATION", 0.75, lo, hi
        if len(chunk) >= 2 and words[0] in PLACE_PREFIXES and first_tok.cap and not all_caps:
            rest = words[1:]
            if place_cue or strong_place_cue or any(k or u for k, u in zip(known[1:], unknown[1:])):
                return "LOCATION", 0.7, lo, hi
            if all(self._non_pii(w) for w in rest):
                return None, 0, lo, hi
        if all_caps:
            # "JOHN SMITH": only when the words are names or not English words (not "CHIEF COMPLAINT")
            if len(chunk) >= 2 and all(k or u for k, u, g in zip(known, unknown, sig) if g) and not any(nonpii):
                return "PERSON", 0.7, lo, hi
            return None, 0, lo, hi
        if len(chunk) >= 2:
            if all(c or p or not g for c, p, g in zip(common, nonpii, sig)) and not any(known):
                # only ordinary words: a heading or department, unless a place cue precedes
                if (strong_place_cue or prev0 in ("from", "of", "to", "at")) and not any(nonpii) and not sent_init:
                    return "LOCATION", 0.6, lo, hi
                return None, 0, lo, hi
            if all(p or not g for p, g in zip(nonpii, sig)):
                return None, 0, lo, hi
            if strong_place_cue and not known[0]:
                return "LOCATION", 0.7, lo, hi
            return "PERSON", 0.8, lo, hi
        tok = chunk[0]
        w = words[0]
        if nonpii[0] or not sig[0]:
            return None, 0, lo, hi
        if strong_place_cue and not known[0]:
            return "LOCATION", 0.7, lo, hi
        if known[0]:
            if not sent_init:
                if common[0] and not (person_follow or place_cue or prev0 in ("and", "or", "with", "to", "from", "for", "by")):
                    return "PERSON", 0.55, lo, hi
                return "PERSON", 0.8, lo, hi
            if not common[0] or person_follow:
                return "PERSON", 0.7, lo, hi
            return None, 0, lo, hi
        if unknown[0] and len(w) >= 6 and w.endswith(DRUG_SUFFIXES):
            return None, 0, lo, hi  # atorvastatin-like INN stems
        if unknown[0]:
            if not sent_init:
                return ("LOCATION" if place_cue and prev0 in STRONG_PLACE_CUES else "PERSON"), 0.65, lo, hi
            if person_follow or tok.clause_init or (nxt is not None and text[tok.end : nxt.start].strip() == ","):
                return "PERSON", 0.6, lo, hi
            return None, 0, lo, hi
        # "Hansa and I ...", "Hope, my sister, ..."
        if re.match(r"\s+and\s+(?:i|me|my)\b|,\s+my\s", text[tok.end : tok.end + 10], re.IGNORECASE):
            return "PERSON", 0.6, lo, hi
        # an ordinary English word, capitalized mid-sentence and followed by a person verb ("Rose called")
        if not sent_init and not tok.clause_init and person_follow and next_word not in ("is", "was", "and", "will", "can", "could", "would", "should", "has", "had"):
            return "PERSON", 0.5, lo, hi
        return None, 0, lo, hi

    def _name_like(self, tok: _Tok) -> bool:
        return len(tok.low) > 1 and (self._known_name(tok.low) or not (is_common_word(tok.low) or self._non_pii(tok.low)))

    def _edge_strip(self, tok: _Tok) -> bool:
        w = tok.low
        if self._known_name(w) and w not in MONTHS and w not in WEEKDAYS:
            return False
        return self._non_pii(w) or (tok.caps and len(w) <= 5 and not self._known_name(w))


def recognizers(config) -> list[GatewayRecognizer]:
    return [GatewayProperNameRecognizer()]
