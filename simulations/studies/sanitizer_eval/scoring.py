"""Leak rate and utility of the sanitizer vs Presidio's default recognizers on synthetic prompts.

Leak rule (per gold identifier; a survivor is counted only beyond the occurrences the same
string already has in the prompt's non-identifier text, so a surname that is also an ordinary
word elsewhere in the prompt is not a false leak):

* numbers and codes (phone, SSN, MRN, card, IBAN, ...): the identifier's digit string (or, when it
  has letters, its upper-cased letters+digits) survives in the sanitized text with separators
  removed -- reformatting does not hide a leak;
* PERSON: any part of the name (first, last) survives as a whole word;
* LOCATION: the place name survives as a whole word (case-insensitive); ADDRESS: the street name
  (the words between the house number and the suffix) or the house number + street survive;
* EMAIL / URL: the address, its local part (>= 4 chars) or its host survives;
* DATE: the date without its year (e.g. "March 14", "03/14") survives -- keeping the year is the
  intended generalization;
* AGE: the exact number survives as a standalone number outside an age-band label ("40-49",
  "90 or older", "90+"); for AGE <= 89 this is reported separately (a quasi-identifier the
  sanitizer generalizes), AGE_OVER_89 is a direct identifier.

Utility: share of the prompt's non-identifier content words (alphabetic, >= 3 letters, not a
stop word) that are still in the sanitized text (multiset count).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from client.gateway.abstraction import AGE_BAND_LABEL_RE
from simulations.studies.sanitizer_eval.prompts import EvalPrompt, GoldSpan, generate

DIRECT_GOLD = (
    "PERSON", "ADDRESS", "LOCATION", "ZIP", "DATE", "AGE_OVER_89", "PHONE", "FAX", "EMAIL", "SSN",
    "MRN", "HEALTH_PLAN", "ACCOUNT", "LICENSE", "VEHICLE", "DEVICE", "URL", "IP_ADDRESS",
    "CREDIT_CARD", "IBAN", "ID",
)
QUASI_GOLD = ("AGE",)
_WORD = re.compile(r"[A-Za-z]{3,}")


def _stop_words() -> frozenset[str]:
    global _STOP
    if _STOP is None:
        from spacy.lang.en.stop_words import STOP_WORDS

        _STOP = frozenset(STOP_WORDS)
    return _STOP


_STOP: frozenset[str] | None = None


def _alnum_upper(s: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", s).upper()


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _count_word(haystack: str, needle: str, flags: int = 0) -> int:
    return len(re.findall(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", haystack, flags))


def _blank(text: str, spans: list[GoldSpan]) -> str:
    chars = list(text)
    for s in spans:
        for i in range(s.start, s.end):
            chars[i] = " "
    return "".join(chars)


_YEAR_RE = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)|'\d{2}\b")


def _date_needle(value: str) -> str:
    v = _YEAR_RE.sub("", value)
    v = re.sub(r"^[\s,./-]+|[\s,./-]+$", "", v)
    return v


def leaked(span: GoldSpan, blanked: str, sanitized: str) -> bool:
    """Did gold identifier ``span`` survive into ``sanitized``? (see module doc)."""
    t, v = span.type, span.text
    if t == "PERSON":
        parts = [p for p in re.split(r"[\s,]+", v) if len(p) >= 2]
        return any(_count_word(sanitized, p) > _count_word(blanked, p) for p in parts)
    if t == "LOCATION":
        return _count_word(sanitized, v, re.IGNORECASE) > _count_word(blanked, v, re.IGNORECASE)
    if t == "ADDRESS":
        m = re.match(r"\s*(\d+\w*)\s+(?:(?:[NSEW]\.?|North|South|East|West)\s+)?(.+?)\s+\S+?(?:,.*)?$", v)
        needles = [v]
        if m:
            needles += [m.group(2), f"{m.group(1)} {m.group(2)}"]
        return any(_count_word(sanitized, n, re.IGNORECASE) > _count_word(blanked, n, re.IGNORECASE) for n in needles)
    if t in ("EMAIL", "URL"):
        needles = [v]
        if t == "EMAIL":
            local, _, host = v.partition("@")
            if len(local) >= 4:
                needles.append(local)
        else:
            host = re.sub(r"^[a-z]+://", "", v).split("/")[0]
            if host.startswith("www."):
                host = host[4:]
            needles.append(host)
        return any(sanitized.lower().count(n.lower()) > blanked.lower().count(n.lower()) for n in needles if n)
    if t == "DATE":
        needle = _date_needle(v)
        if not needle:
            return False
        return _count_word(sanitized, needle, re.IGNORECASE) > _count_word(blanked, needle, re.IGNORECASE)
    if t in ("AGE", "AGE_OVER_89"):
        clean_s = AGE_BAND_LABEL_RE.sub(" ", sanitized)
        clean_b = AGE_BAND_LABEL_RE.sub(" ", blanked)
        return len(re.findall(rf"(?<![\d]){v}(?![\d])", clean_s)) > len(re.findall(rf"(?<![\d]){v}(?![\d])", clean_b))
    # numbers and codes
    if re.search(r"[A-Za-z]", v) and t not in ("PHONE", "FAX"):
        needle, norm = _alnum_upper(v), _alnum_upper
    else:
        main = re.split(r"\s*(?:x|ext\.?)\s*\d+$", v)[0]
        needle, norm = _digits(main), _digits
    if len(needle) < 4:
        return needle in norm(sanitized) and norm(sanitized).count(needle) > norm(blanked).count(needle)
    return norm(sanitized).count(needle) > norm(blanked).count(needle)


def content_words(text: str) -> Counter:
    stop = _stop_words()
    return Counter(w.lower() for w in _WORD.findall(text) if w.lower() not in stop)


@dataclass
class SystemResult:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    leaks: dict[str, int] = field(default_factory=dict)
    words_total: int = 0
    words_kept: int = 0
    seconds: float = 0.0
    errors: int = 0
    examples: list[dict] = field(default_factory=list)

    def leak_rate(self, types) -> float:
        n = sum(self.counts.get(t, 0) for t in types)
        return (sum(self.leaks.get(t, 0) for t in types) / n) if n else 0.0

    @property
    def utility(self) -> float:
        return self.words_kept / self.words_total if self.words_total else 1.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "per_type": {
                t: {"count": self.counts[t], "leaked": self.leaks.get(t, 0), "leak_rate": self.leaks.get(t, 0) / self.counts[t]}
                for t in sorted(self.counts)
            },
            "direct_leak_rate": self.leak_rate(DIRECT_GOLD),
            "quasi_leak_rate": self.leak_rate(QUASI_GOLD),
            "utility": self.utility,
            "seconds": self.seconds,
            "errors": self.errors,
        }


def evaluate_system(name: str, sanitize: Callable[[str], str], prompts: list[EvalPrompt], keep_examples: int = 0) -> SystemResult:
    res = SystemResult(name)
    counts: dict[str, int] = defaultdict(int)
    leaks: dict[str, int] = defaultdict(int)
    t0 = time.perf_counter()
    outputs = []
    for p in prompts:
        try:
            outputs.append(sanitize(p.text))
        except Exception:  # a refused prompt leaks nothing and keeps nothing
            res.errors += 1
            outputs.append("")
    res.seconds = time.perf_counter() - t0
    for p, out in zip(prompts, outputs):
        blanked = _blank(p.text, p.spans)
        for span in p.spans:
            counts[span.type] += 1
            if leaked(span, blanked, out):
                leaks[span.type] += 1
                if len(res.examples) < keep_examples:
                    res.examples.append({"id": p.id, "type": span.type, "sanitized": out})
        before = content_words(blanked)
        after = content_words(out)
        res.words_total += sum(before.values())
        res.words_kept += sum(min(c, after[w]) for w, c in before.items())
    res.counts, res.leaks = dict(counts), dict(leaks)
    return res


def presidio_default_sanitize() -> Callable[[str], str]:
    """Presidio's predefined recognizers on a blank spaCy engine + default replace operator."""
    import logging

    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_anonymizer import AnonymizerEngine

    from client.gateway.sanitizer import BlankSpacyNlpEngine

    # Presidio's email recognizer validates domains with tldextract, which would try to fetch the
    # public-suffix list over the network; use the snapshot bundled with tldextract instead.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    analyzer = AnalyzerEngine(nlp_engine=BlankSpacyNlpEngine.create())
    anonymizer = AnonymizerEngine()

    def run(text: str) -> str:
        results = analyzer.analyze(text=text, language="en")
        return anonymizer.anonymize(text=text, analyzer_results=results).text

    return run


def gateway_sanitize(config_path: str | None = None) -> Callable[[str], str]:
    from client.gateway.sanitizer import PromptSanitizer

    sanitizer = PromptSanitizer(config_path=config_path)

    def run(text: str) -> str:
        return sanitizer.sanitize(text).sanitized

    return run


def run_eval(n: int = 500, seed: int = 0, config_path: str | None = None, baseline: bool = True, keep_examples: int = 0,
             template_set: str = "standard") -> dict:
    prompts = generate(n, seed, template_set)
    systems = [evaluate_system("fedpriv gateway", gateway_sanitize(config_path), prompts, keep_examples)]
    if baseline:
        systems.append(evaluate_system("Presidio default", presidio_default_sanitize(), prompts))
    types = [t for t in DIRECT_GOLD + QUASI_GOLD if any(t in s.counts for s in systems)]
    return {
        "n_prompts": n,
        "seed": seed,
        "template_set": template_set,
        "types": types,
        "systems": [s.to_dict() | {"prompts_per_second": (n / s.seconds) if s.seconds else None} for s in systems],
        "examples": systems[0].examples,
    }


def render_table(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    systems = report["systems"]
    table = Table(title=f"Sanitizer eval: {report['n_prompts']} synthetic prompts (seed {report['seed']}, {report.get('template_set', 'standard')} templates)")
    table.add_column("entity type")
    table.add_column("count", justify="right")
    for s in systems:
        table.add_column(f"leak: {s['name']}", justify="right")
    for t in report["types"]:
        label = {"AGE": "AGE <= 89 (quasi)", "AGE_OVER_89": "AGE > 89"}.get(t, t)
        count = systems[0]["per_type"].get(t, {}).get("count", 0)
        row = [label, str(count)]
        for s in systems:
            pt = s["per_type"].get(t)
            row.append(f"{100 * pt['leak_rate']:.1f}%" if pt else "-")
        table.add_row(*row)
    table.add_section()
    table.add_row("direct identifiers", str(sum(systems[0]["per_type"].get(t, {}).get("count", 0) for t in DIRECT_GOLD)),
                  *[f"{100 * s['direct_leak_rate']:.2f}%" for s in systems])
    table.add_row("utility (content words kept)", "", *[f"{100 * s['utility']:.1f}%" for s in systems])
    table.add_row("prompts/s (this run)", "", *[f"{s['prompts_per_second']:.0f}" if s["prompts_per_second"] else "-" for s in systems])
    console.print(table)
    ours = systems[0]
    goal_leak, goal_util = ours["direct_leak_rate"] <= 0.01, ours["utility"] >= 0.90
    console.print(
        f"goals: direct-identifier leak <= 1%: {'met' if goal_leak else 'NOT met'} ({100 * ours['direct_leak_rate']:.2f}%); "
        f"utility >= 90%: {'met' if goal_util else 'NOT met'} ({100 * ours['utility']:.1f}%)"
    )


def save_json(report: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
