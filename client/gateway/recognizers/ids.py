"""Numbers and codes: contact details, government/medical/financial/device identifiers.

* format recognizers with validation where a checksum exists: email, URL, IPv4/IPv6, SSN, credit
  card (Luhn), IBAN (ISO 7064 mod 97), VIN, MAC, UUID, phone/fax (Google's ``phonenumbers``);
* keyword-anchored recognizers: the value after "MRN", "member ID", "account #", "DL",
  "serial no.", "plate", "passport" ... is typed by its keyword (MRN, HEALTH_PLAN, ACCOUNT,
  LICENSE, VEHICLE, DEVICE, ID);
* a catch-all for "other unique identifiers": any run of 5+ digits or any code mixing letters with
  4+ digits that nothing more specific claimed becomes an ID.
"""

from __future__ import annotations

import ipaddress
import re

import phonenumbers

from client.gateway.recognizers.common import GatewayRecognizer, Hit

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_TLDS = (
    "com|org|net|edu|gov|mil|int|io|co|us|uk|ca|de|fr|es|it|nl|au|in|info|biz|health|me|ly|app|dev|ai|"
    "tv|xyz|online|site|care|clinic|hospital|md|page|link|news|blog|shop|store|eu|ch|se|no|dk|fi|pl|br|mx|jp|cn|ru"
)
_URL = re.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'\]\[]+"
    r"|\b(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?:" + _TLDS + r")\b(?:/[^\s<>\"'\]\[]*)?",
    re.IGNORECASE,
)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?![\d.]*\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
# runs on normalized text (client.gateway.normalize): every dash variant is "-" by now
_SSN = re.compile(r"(?<![\w-])\d{3} ?([-/. ]) ?\d{2} ?\1 ?\d{4}(?![\w-])")
_SSN_CTX = re.compile(r"\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?|ss#)\s*(?:is|:|#|=)?\s*(\d(?:[ ./-]{0,3}\d){8})(?!\d)", re.IGNORECASE)
# digits split up to hide them ("1 2 3 4 5 6 7 8 9", "123 / 45 / 6789"): 7+ digits in small groups
_SEPARATED_DIGITS = re.compile(r"(?<![\w.])\d{1,4}(?:(?: ?[-/.] ?| )\d{1,4}){2,}(?![\w])")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{1,4}){3,8}\b")
_VIN = re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b")
_MAC = re.compile(r"\b[0-9A-Fa-f]{2}(?:([:-])[0-9A-Fa-f]{2})(?:\1[0-9A-Fa-f]{2}){4}\b|\b[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\b")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_FAX_CTX = re.compile(r"\bfax\b|\bfacsimile\b|\bf:", re.IGNORECASE)
_PHONE_FALLBACK = re.compile(
    r"(?<![\w/])(?:\+\d{1,3}[\s.-]?(?:\(0\)\s?)?)?(?:\(0?\d{1,4}\)\s?|\d{2,5}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?(?![\w/])",
    re.IGNORECASE,
)

# keyword -> entity type. The value after the keyword (and an optional "number/no./#/is/:") is taken.
_KEYWORDS: list[tuple[str, str]] = [
    ("MRN", r"mrn|m\.r\.n\.?|mr\s?#|medical\s+record(?:s)?(?:\s+(?:number|no\.?|num|#|id))?|med\s+rec(?:ord)?|chart(?:\s+(?:number|no\.?|#|id))|hospital\s+(?:number|no\.?|#|id)|patient\s+(?:id|number|no\.?|#)|unit\s+(?:number|no\.?)|record\s+(?:number|no\.?|#)|emr\s+(?:id|number|#)|ehr\s+(?:id|number|#)"),
    ("HEALTH_PLAN", r"member(?:ship)?\s+(?:id|number|no\.?|#)|subscriber\s+(?:id|number|no\.?|#)|policy\s+(?:id|number|no\.?|#)|insurance\s+(?:id|number|no\.?|#|card(?:\s+(?:number|no\.?|#))?)|group\s+(?:id|number|no\.?|#)|plan\s+(?:id|number|no\.?|#)|health\s+plan(?:\s+(?:id|number|no\.?|#))?|beneficiary\s+(?:id|number|no\.?|#)|medicare(?:\s+(?:beneficiary\s+)?(?:id|number|no\.?|#|card))?|medicaid(?:\s+(?:id|number|no\.?|#|card))?|mbi|hicn|bin|pcn|rx\s*(?:bin|grp|group|pcn)|id\s+card"),
    ("ACCOUNT", r"(?:bank\s+|checking\s+|savings\s+|billing\s+|customer\s+|patient\s+account\s+)?acc(?:oun)?t\.?(?:\s+(?:number|no\.?|num|#|id))?|a/c|routing(?:\s+(?:number|no\.?|#))?|aba(?:\s+(?:number|no\.?|#))?|customer\s+(?:id|number|no\.?|#)|invoice\s+(?:number|no\.?|#)|billing\s+(?:id|number|no\.?|#)"),
    ("LICENSE", r"driver'?s'?\s+licen[cs]e(?:\s+(?:number|no\.?|num|#|id))?|drivers?\s+licen[cs]e(?:\s+(?:number|no\.?|#))?|licen[cs]e(?:\s+(?:number|no\.?|num|#|id))?|\bdl\b|d\.l\.|dea(?:\s+(?:number|no\.?|#|registration))?|npi(?:\s+(?:number|no\.?|#))?|certificate\s+(?:number|no\.?|#)|permit\s+(?:number|no\.?|#)|registration\s+(?:number|no\.?|#)|board\s+certification\s+(?:number|no\.?|#)"),
    ("VEHICLE", r"vin(?:\s+(?:number|no\.?|#))?|vehicle\s+(?:id(?:entification)?|number|no\.?|#)(?:\s+number)?|(?:licen[cs]e\s+)?plate(?:\s+(?:number|no\.?|#))?|tag\s+(?:number|no\.?|#)|number\s+plate|reg(?:istration)?\s+plate"),
    ("DEVICE", r"serial(?:\s+(?:number|no\.?|num|#))?|s/n|\bsn\b|device\s+(?:id|identifier|number|no\.?|serial|#)|imei|meid|udi|implant\s+(?:id|number|serial|#)|pacemaker\s+(?:id|serial|number|#)|pump\s+(?:id|serial|#)|model\s*/\s*serial|mac\s+address|asset\s+tag"),
    ("ID", r"passport(?:\s+(?:number|no\.?|#))?|(?:national|student|employee|staff|badge|member|case|claim|ticket|reference|ref|confirmation|order|tracking|booking|reservation|application|file|visa|green\s+card|alien|tax|military|voter|school|library|login|user|customer|client|referral|authorization|prior\s+auth(?:orization)?)\s*(?:id|number|no\.?|num|#|code)|\bein\b|\btin\b|\bitin\b|\bid(?:entification)?(?:\s+(?:number|no\.?|#))?|\bref\.?|auth(?:orization)?\s+code|a-number|uscis(?:\s+(?:number|#))?"),
]
_CONNECT = r"\s*(?:\(?\s*(?:number|no\.?|num|#|id)\s*\)?)?\s*(?:is|was|=|:|-|#|of)?\s*:?\s*#?\s*"
_VALUE = r"([A-Za-z0-9](?:[A-Za-z0-9]|[-/.](?=[A-Za-z0-9])){1,24}(?:\s(?=[A-Za-z]*\d)[A-Za-z0-9]{2,8}(?:[-/.][A-Za-z0-9]{1,8})*){0,3})"
_KEYWORD_RES = [
    (etype, re.compile(r"(?<![\w])(?:" + kw + r")" + _CONNECT + _VALUE, re.IGNORECASE)) for etype, kw in _KEYWORDS
]

_YEAR = re.compile(r"(?:19|20)\d\d")
_YEAR_RANGE = re.compile(r"(?:19|20)\d\d\s?[-–]\s?(?:19|20)?\d\d")
_LONG_DIGITS = re.compile(r"(?<![\w.,])\d(?:[\d]|-(?=\d)|\s(?=\d{2}))*\d(?![\w]|[.,]\d)")
_CODE = re.compile(r"(?<![\w-])[A-Za-z0-9]+(?:[-/][A-Za-z0-9]+)*(?![\w-])")
_CODE_ALLOW = re.compile(r"^(?:covid-19|sars-cov-2|h1n1|h5n1|mp3|mp4|4k|1080p|24/7|9-1-1|911|[0-9]+(?:st|nd|rd|th|mg|mcg|ml|kg|lbs?|cm|mm|am|pm|k|m|g|x|s)|\d{1,2}/\d{1,2}|\d{4}s|[a-z]{1,3}\d{1,3}[a-z]?|\d{1,3}[a-z]{1,3})$", re.IGNORECASE)


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if alt:
            d *= 2
            if d > 9:
                d -= 9
        total += d
        alt = not alt
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    v = value.replace(" ", "").upper()
    if not (15 <= len(v) <= 34):
        return False
    rearranged = v[4:] + v[:4]
    try:
        num = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return num % 97 == 1


def _strip_url(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in ".,;:!?)'\"":
        if text[end - 1] == ")" and "(" in text[start:end]:
            break
        end -= 1
    return end


class GatewayContactRecognizer(GatewayRecognizer):
    """EMAIL, URL, IP_ADDRESS, PHONE, FAX."""

    ENTITIES = ("EMAIL", "URL", "IP_ADDRESS", "PHONE", "FAX")

    def find(self, text: str):
        hits: list[Hit] = []
        emails = []
        if "@" in text:
            for m in _EMAIL.finditer(text):
                hits.append(("EMAIL", m.start(), m.end(), 1.0))
                emails.append((m.start(), m.end()))
        if "." in text:
            for m in _URL.finditer(text):
                s, e = m.start(), _strip_url(text, m.start(), m.end())
                if any(a <= s < b for a, b in emails):
                    continue
                token = text[s:e]
                low = token.lower()
                if low.startswith(("e.g", "i.e")) or re.fullmatch(r"[a-z]+\.[a-z]{2}", low) and not low.endswith((".io", ".ai", ".co", ".me", ".us", ".ly")):
                    continue
                # bare "word.md" / "dr.no"-style false positives need at least a domain-ish shape
                if not (low.startswith(("http", "ftp", "www.")) or re.search(r"[a-z0-9-]{2,}\.(?:" + _TLDS + r")(?:/|$)", low)):
                    continue
                hits.append(("URL", s, e, 0.9))
            for m in _IPV4.finditer(text):
                parts = m.group().split("/")[0].split(".")
                if all(0 <= int(p) <= 255 for p in parts) and not all(len(p) == 1 for p in parts):
                    hits.append(("IP_ADDRESS", m.start(), m.end(), 0.95))
        if ":" in text:
            for m in _IPV6.finditer(text):
                cand = m.group()
                if cand.count(":") >= 2 and any(c.isdigit() or c.lower() in "abcdef" for c in cand.replace(":", "")):
                    try:
                        ipaddress.IPv6Address(cand.split("%")[0])
                    except ValueError:
                        continue
                    hits.append(("IP_ADDRESS", m.start(), m.end(), 0.95))
        # phones: libphonenumber for anything with 7+ digits
        if sum(map(str.isdigit, text)) >= 7:
            spans = []
            for match in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE):
                spans.append((match.start, match.end))
            for m in _PHONE_FALLBACK.finditer(text):
                spans.append((m.start(), m.end()))
            for s, e in spans:
                raw = text[s:e]
                digits = re.sub(r"\D", "", raw)
                if _SSN.fullmatch(raw) or len(digits) < 7:
                    continue
                etype = "FAX" if _FAX_CTX.search(text[max(0, s - 24) : s]) else "PHONE"
                hits.append((etype, s, e, 0.85))
        return hits


class GatewayGovernmentFinanceRecognizer(GatewayRecognizer):
    """SSN, CREDIT_CARD, IBAN, VEHICLE (VIN), DEVICE (MAC), ID (UUID)."""

    ENTITIES = ("SSN", "CREDIT_CARD", "IBAN", "VEHICLE", "DEVICE", "ID")

    def find(self, text: str):
        hits: list[Hit] = []
        for m in _SSN.finditer(text):
            area = int(m.group()[:3])
            hits.append(("SSN", m.start(), m.end(), 0.95 if area not in (0, 666) and area < 900 else 0.6))
        for m in _SSN_CTX.finditer(text):
            hits.append(("SSN", m.start(1), m.end(1), 0.95))
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                hits.append(("CREDIT_CARD", m.start(), m.end(), 0.95))
        for m in _IBAN.finditer(text):
            if iban_ok(m.group()):
                hits.append(("IBAN", m.start(), m.end(), 1.0))
        for m in _VIN.finditer(text):
            v = m.group()
            if sum(c.isdigit() for c in v) >= 3 and sum(c.isalpha() for c in v) >= 3:
                hits.append(("VEHICLE", m.start(), m.end(), 0.8))
        for m in _MAC.finditer(text):
            hits.append(("DEVICE", m.start(), m.end(), 0.9))
        for m in _UUID.finditer(text):
            hits.append(("ID", m.start(), m.end(), 0.9))
        return hits


class GatewayKeywordIdRecognizer(GatewayRecognizer):
    """The value following an identifier keyword: MRN, HEALTH_PLAN, ACCOUNT, LICENSE, VEHICLE, DEVICE, ID."""

    ENTITIES = ("MRN", "HEALTH_PLAN", "ACCOUNT", "LICENSE", "VEHICLE", "DEVICE", "ID")

    def find(self, text: str):
        hits: list[Hit] = []
        for etype, rx in _KEYWORD_RES:
            for m in rx.finditer(text):
                value = m.group(1)
                s, e = m.start(1), m.end(1)
                while e > s and text[e - 1] in ".-/":
                    e -= 1
                value = text[s:e]
                n_digits = sum(c.isdigit() for c in value)
                if n_digits == 0:
                    # all-letter values only for plates / codes written in capitals ("ABCDEF")
                    if not (value.isupper() and len(value) >= 5 and etype in ("VEHICLE", "ID", "HEALTH_PLAN")):
                        continue
                elif n_digits < 2 and len(value) < 6:
                    continue
                elif _YEAR.fullmatch(value):
                    continue
                hits.append((etype, s, e, 0.9))
        return hits


class GatewayCatchAllIdRecognizer(GatewayRecognizer):
    """Other unique identifiers: 5+ digit runs and letter/digit codes with 4+ digits."""

    ENTITIES = ("ID",)

    def find(self, text: str):
        hits: list[Hit] = []
        for m in _SEPARATED_DIGITS.finditer(text):
            groups = re.findall(r"\d+", m.group())
            if sum(map(len, groups)) >= 7 and not all(_YEAR.fullmatch(g) for g in groups):
                hits.append(("ID", m.start(), m.end(), 0.4))
        for m in _LONG_DIGITS.finditer(text):
            digits = sum(c.isdigit() for c in m.group())
            if digits >= 5 and not _YEAR_RANGE.fullmatch(m.group()):
                hits.append(("ID", m.start(), m.end(), 0.4))
        for m in _CODE.finditer(text):
            tok = m.group()
            if tok.isalpha() or tok.isdigit():  # most words: no letter/digit mix, nothing to check
                continue
            n_digits = sum(map(str.isdigit, tok))
            n_alpha = sum(c.isalpha() for c in tok)
            if n_alpha == 0 or n_digits == 0 or _CODE_ALLOW.match(tok):
                continue
            if n_digits >= 4 or (n_digits >= 2 and n_alpha >= 2 and len(tok) >= 6 and not any(c.islower() for c in tok)) or (
                n_digits >= 3 and len(tok) >= 5
            ):
                hits.append(("ID", m.start(), m.end(), 0.4))
        return hits


def recognizers(config) -> list[GatewayRecognizer]:
    return [GatewayContactRecognizer(), GatewayGovernmentFinanceRecognizer(), GatewayKeywordIdRecognizer(), GatewayCatchAllIdRecognizer()]
