"""The privacy gateway's sanitizer: detect identifiers, generalize quasi-identifiers, substitute.

Usage (router side)::

    from client.gateway.sanitizer import PromptSanitizer
    from client.gateway.session import ConversationSession

    sanitizer = PromptSanitizer()              # build once per process (loads gazetteers)
    session = ConversationSession()            # one per conversation (or EncryptedVault(...).open())
    result = sanitizer.sanitize(text, session) # -> types.SanitizedPrompt, or raises SanitizationError
    if result.residual_risk > threshold: refuse
    send(result.sanitized); answer = session.restore(cloud_answer)

Pipeline (all inside one try: any exception -> ``SanitizationError``, never partial output):

1. the text is normalized (``normalize``: NFKC, dash/space variants, spelled-out separators) and,
   when it is all lower case or all capitals, truecased (``grammar.truecase``); Presidio's
   ``AnalyzerEngine`` (its NoOpNlpEngine: no tokenization, no model) runs the recognizer families
   from ``client.gateway.recognizers`` on it (built once, in ``__init__``); the span grammar
   (``grammar.refine``) extends names over adjacent non-words, takes in house numbers, ages after
   names and places of address blocks; spans are mapped back to the original text; the names and
   places this conversation has already produced (the session's originals) are added;
2. overlapping detections are merged into their union (a partial overlap never leaves a piece of
   an identifier behind); the merged span takes the type of its most confident member;
3. quasi-identifiers are generalized (``abstraction``): ages -> bands, dates -> year, places ->
   state; everything else, and whatever cannot be generalized, becomes a typed numbered
   placeholder from the session (``[PERSON_1]``);
4. a verification pass re-scans the sanitized text for hard identifiers (emails, SSNs, card
   numbers, long digit runs); finding one there means a bug, so it fails closed;
5. ``residual_risk`` estimates the chance that an identifier survived (``risk``: a logistic model
   calibrated on the evaluation's development part).
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from dataclasses import dataclass, field

from client.gateway import abstraction, risk
from client.gateway.grammar import Span, refine, truecase
from client.gateway.normalize import normalize
from client.gateway.config import GatewayConfig, load_config
from client.gateway.recognizers import build_registry
from client.gateway.recognizers.common import STATE_CODE_RE, STATE_NAME_RE, is_common_word
from client.gateway.session import PLACEHOLDER_RE, ConversationSession
from client.gateway.types import Entity, PlaceholderSession, SanitizationError, SanitizedPrompt

log = logging.getLogger(__name__)

# Direct identifiers (HIPAA Safe Harbor style); AGE (<= 89) is a quasi-identifier.
DIRECT_TYPES = frozenset(
    {
        "PERSON", "ADDRESS", "LOCATION", "ZIP", "FACILITY", "DATE", "PHONE", "FAX", "EMAIL", "SSN",
        "MRN", "HEALTH_PLAN", "ACCOUNT", "LICENSE", "VEHICLE", "DEVICE", "URL", "IP_ADDRESS",
        "CREDIT_CARD", "IBAN", "ID",
    }
)
# When merged spans tie on score, the more specific type names the union.
_TYPE_PRIORITY = {
    "SSN": 9, "CREDIT_CARD": 9, "IBAN": 9, "EMAIL": 9, "IP_ADDRESS": 8, "URL": 8, "MRN": 8,
    "HEALTH_PLAN": 8, "ACCOUNT": 8, "LICENSE": 8, "VEHICLE": 8, "DEVICE": 8, "PHONE": 7, "FAX": 7,
    "ADDRESS": 7, "DATE": 6, "AGE": 6, "ZIP": 6, "PERSON": 5, "FACILITY": 5, "LOCATION": 4, "ID": 1,
}
DEFAULT_RISK_THRESHOLD = 0.2

_STATE_AFTER = re.compile(r"\s*,\s*(?:" + STATE_CODE_RE + r"|" + STATE_NAME_RE + r")\b")
_YEAR_GROUP = re.compile(r"(?:19|20)\d\d")


def _not_years(run: str) -> bool:
    groups = re.findall(r"\d+", run)
    return sum(len(g) for g in groups) >= 7 and not all(_YEAR_GROUP.fullmatch(g) for g in groups)


def _iban_valid(candidate: str) -> bool:
    from client.gateway.recognizers.ids import iban_ok

    return iban_ok(candidate)


_VERIFY_PATTERNS = [
    ("EMAIL", re.compile(r"[\w.+'-]+\s?@\s?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), None),
    ("SSN", re.compile(r"(?<![\d])\d{3}\s?[-/. ]?\s?\d{2}\s?[-/. ]?\s?\d{4}(?!\d)"), None),
    ("DIGITS", re.compile(r"\d(?:[ ./()-]{0,2}\d){6,}"), _not_years),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), _iban_valid),
]



class BlankSpacyNlpEngine:
    """Presidio NLP engine over ``spacy.blank("en")``: tokenizer only, nothing downloaded (for
    Presidio's own predefined recognizers, which read tokens; the gateway's do not)."""

    @staticmethod
    def create():
        import spacy
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        class _Engine(SpacyNlpEngine):
            def __init__(self) -> None:
                super().__init__(models=[{"lang_code": "en", "model_name": "blank:en"}])

            def load(self) -> None:
                self.nlp = {"en": spacy.blank("en")}

            def get_supported_entities(self):  # no NER component
                return []

        return _Engine()


def _no_context_enhancer():
    """Our recognizers score their own context; skip Presidio's lemma-window re-scoring (~0.7 ms)."""
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer

    class _NoContext(ContextAwareEnhancer):
        def __init__(self) -> None:
            super().__init__(context_similarity_factor=0, min_score_with_context_similarity=0, context_prefix_count=0, context_suffix_count=0)

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
            return raw_results

    return _NoContext()


def build_analyzer(config: GatewayConfig):
    """Presidio's AnalyzerEngine over the gateway's recognizers. They read the raw text themselves,
    so the NLP engine is Presidio's NoOpNlpEngine: no spaCy tokenization per prompt (it was a
    third of the per-prompt time)."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    return AnalyzerEngine(
        registry=build_registry(config),
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}]),
        supported_languages=["en"],
        context_aware_enhancer=_no_context_enhancer(),
    )


class PromptSanitizer:
    """``types.Sanitizer`` implementation. Thread-safe; build once and reuse."""

    def __init__(self, config: GatewayConfig | None = None, config_path: str | None = None) -> None:
        self.config = config if config is not None else load_config(config_path)
        self.analyzer = build_analyzer(self.config)
        self.max_chars = self.config.max_chars
        self._allow = list(self.config.allow_list)
        self._known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # session -> _KnownTerms
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public API
    def sanitize(self, text: str, session: PlaceholderSession | None = None) -> SanitizedPrompt:
        """Detect, generalize and substitute. Raises SanitizationError on any failure."""
        if not isinstance(text, str):
            raise SanitizationError(f"prompt must be a string, not {type(text).__name__}")
        if len(text) > self.max_chars:
            raise SanitizationError(f"prompt has {len(text)} characters, over the limit of {self.max_chars}")
        if session is None:
            session = ConversationSession()
        try:
            spans, caseless = self._detect(text, session)
            entities, sanitized = self._substitute(text, spans, session)
            self._verify(sanitized)
            risk = self.residual_risk(sanitized, entities, caseless)
            commit = getattr(session, "commit", None)
            if commit is not None:
                commit()
        except SanitizationError:
            raise
        except Exception as err:  # fail closed: nothing partially sanitized leaves this method
            log.warning("sanitizer failed closed: %s", type(err).__name__)
            raise SanitizationError(f"sanitizing failed ({type(err).__name__}); nothing may be sent") from err
        return SanitizedPrompt(original=text, sanitized=sanitized, entities=entities, residual_risk=risk)

    def analyze(self, text: str, session: PlaceholderSession | None = None) -> list[Entity]:
        """Detected (merged) spans without substitution; ``replacement`` is left empty."""
        try:
            return [Entity(s.type, s.start, s.end, text[s.start : s.end]) for s in self._detect(text, session)[0]]
        except Exception as err:
            raise SanitizationError(f"analysis failed ({type(err).__name__})") from err

    @staticmethod
    def residual_risk(sanitized: str, entities: list[Entity], caseless: bool = False) -> float:
        """Estimated probability that a direct identifier survived in ``sanitized`` (``risk``: a
        logistic model of what is left in the text, calibrated on the evaluation's dev part)."""
        return risk.residual_risk(sanitized, (e.type for e in entities if e.type in DIRECT_TYPES), caseless)

    # ------------------------------------------------------------------ detection
    def _detect(self, text: str, session: PlaceholderSession | None) -> tuple[list[Span], bool]:
        """Detection runs on the normalized text (``normalize``); spans are mapped back to `text`.
        Also says whether the prompt was caseless (all lower case or all capitals)."""
        if not text.strip():
            return [], False
        norm = normalize(text)
        analyzed = truecase(norm.text)
        results = self.analyzer.analyze(text=analyzed, language="en", allow_list=self._allow or None)
        found = [Span(r.entity_type, r.start, r.end, float(r.score)) for r in results]
        caseless = analyzed != norm.text
        found = _merge(found)
        for _ in range(2):  # a second pass sees what the first added (a city, then its postcode)
            refined = _merge(refine(analyzed, found, caseless=caseless))
            if refined == found:
                break
            found = refined
        raw = []
        for r in found:
            start, end = norm.span(r.start, r.end) if norm.changed else (r.start, r.end)
            raw.append(Span(r.type, start, end, r.score))
        raw.extend(self._known_mentions(text, session))
        return _merge(raw), caseless

    def _known_mentions(self, text: str, session) -> list[Span]:
        """Names/places the conversation already mapped, and the parts of multi-word names.

        The session's originals are indexed incrementally by their first word (``_KnownTerms``),
        so a prompt costs O(its words + the mappings new since the last prompt), whatever the
        conversation's length."""
        if session is None or not hasattr(session, "originals"):
            return []
        with self._lock:
            try:
                known = self._known.get(session)
                if known is None:
                    known = self._known[session] = _KnownTerms()
            except TypeError:  # a session type that cannot be weakly referenced: index it afresh
                known = _KnownTerms()
        with known.lock:
            if hasattr(session, "originals_since"):
                new = session.originals_since(known.indexed)
                known.indexed += len(new)
            else:
                new = [(t, o) for t in _KNOWN_TYPES for o in session.originals(t)]
                known.indexed = 0
                known.by_first.clear()
            for etype, original in new:
                if etype in _KNOWN_TYPES:
                    known.add(original, etype)
            return known.find(text)

    # ------------------------------------------------------------------ substitution
    def _substitute(self, text: str, spans: list[Span], session: PlaceholderSession) -> tuple[list[Entity], str]:
        abst = self.config.abstraction
        pieces: list[str] = []
        entities: list[Entity] = []
        pos = 0
        for span in spans:
            original = text[span.start : span.end]
            replacement = None
            if span.type == "AGE":
                replacement = abstraction.generalize_age(original, abst.age_band_width)
            elif span.type == "DATE" and abst.dates == "year":
                replacement = abstraction.generalize_date(original)
            elif span.type == "LOCATION" and abst.places == "state" and not _STATE_AFTER.match(text, span.end):
                replacement = abstraction.generalize_place(original)
            if replacement is None:
                replacement = session.placeholder_for(span.type, original)
            pieces.append(text[pos : span.start])
            pieces.append(replacement)
            pos = span.end
            entities.append(Entity(span.type, span.start, span.end, original, replacement))
        pieces.append(text[pos:])
        return entities, "".join(pieces)

    @staticmethod
    def _verify(sanitized: str) -> None:
        """Detectors of its own over the NORMALIZED sanitized text: an e-mail address, an SSN-shaped
        number, 7+ digits however separated (not a list of years), a valid IBAN. Finding one means
        an identifier survived in a form the first pass did not see: fail closed."""
        masked = PLACEHOLDER_RE.sub(" ", normalize(sanitized).text)
        for name, rx, check in _VERIFY_PATTERNS:
            for m in rx.finditer(masked):
                if check is None or check(m.group()):
                    raise SanitizationError(f"verification found a residual {name} after substitution; nothing may be sent")


_KNOWN_TYPES = ("PERSON", "LOCATION", "FACILITY")
_NAME_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


@dataclass
class _KnownTerms:
    """A conversation's mapped names and places, keyed by their first word."""

    indexed: int = 0
    by_first: dict[str, dict[str, str]] = field(default_factory=dict)  # first word -> {term: type}
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, original: str, etype: str) -> None:
        self._add(original, etype)
        if etype == "PERSON":  # "Zofia Wrona" -> also "Zofia" and "Wrona" alone
            for part in _NAME_WORD.findall(original):
                if len(part) >= 3 and part[0].isupper() and not is_common_word(part):
                    self._add(part, etype)

    def _add(self, term: str, etype: str) -> None:
        first = _NAME_WORD.match(term)
        if first is None:
            return
        self.by_first.setdefault(first.group(), {}).setdefault(term, etype)

    def find(self, text: str) -> list[Span]:
        if not self.by_first:
            return []
        spans: list[Span] = []
        for m in _NAME_WORD.finditer(text):
            terms = self.by_first.get(m.group())
            if not terms or (m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] == "_")):
                continue
            best = None
            for term, etype in terms.items():
                end = m.start() + len(term)
                if text.startswith(term, m.start()) and not (end < len(text) and (text[end].isalnum() or text[end] == "_")):
                    if best is None or end > best[1]:
                        best = (etype, end)
            if best is not None:
                spans.append(Span(best[0], m.start(), best[1], 0.9))
        return spans


def _merge(spans: list[Span]) -> list[Span]:
    """Union of overlapping spans; the union takes the type of its best member."""
    if not spans:
        return []
    spans = sorted(spans, key=lambda s: (s.start, -s.end))
    merged: list[Span] = []
    group = [spans[0]]
    end = spans[0].end
    for span in spans[1:]:
        if span.start < end:
            group.append(span)
            end = max(end, span.end)
        else:
            merged.append(_collapse(group, end))
            group, end = [span], span.end
    merged.append(_collapse(group, end))
    return merged


def _collapse(group: list[Span], end: int) -> Span:
    start = group[0].start
    if len(group) == 1:
        return group[0]
    best = max(group, key=lambda s: (s.score, _TYPE_PRIORITY.get(s.type, 3), s.end - s.start))
    etype = best.type
    # an age/date swallowed into a larger span cannot be generalized as such: type the union by
    # the best member that covers it all when there is one
    covering = [s for s in group if s.start == start and s.end == end]
    if covering and best.type in ("AGE", "DATE") and best not in covering:
        etype = max(covering, key=lambda s: (s.score, _TYPE_PRIORITY.get(s.type, 3))).type
    return Span(etype, start, end, max(s.score for s in group))


_default: PromptSanitizer | None = None
_default_lock = threading.Lock()


def default_sanitizer() -> PromptSanitizer:
    """A process-wide sanitizer with the shipped default config (built on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = PromptSanitizer()
        return _default
