"""Dates more precise than a year, and ages.

DATE: numeric (03/14/2021, 3-14-21, 2021-03-14, 14.03.2021), month-name forms ("March 14, 2021",
"14th of March", "Mar. 14", "March 2021"), with weekday prefixes. A month or a year alone is not a
date element that needs removing.

AGE: "47-year-old", "47 years old", "47 yo", "47 y/o", "47M", "age 47", "aged 47", "at the age of
47", "I'm 47", "turned 47" ... The sanitizer generalizes them into bands (abstraction.py).
"""

from __future__ import annotations

import re

from client.gateway.recognizers.common import GatewayRecognizer, Hit

_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_YEAR = r"(?:19|20)\d{2}"
_YEAR2 = r"(?:'?\d{2})"
_WEEKDAY = r"(?:(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?\.?,?\s+)"

DATE_PATTERNS = [
    # March 14, 2021 / Mar. 14th 2021 / March 14 / Monday, March 14
    (re.compile(r"\b" + _WEEKDAY + r"?" + _MONTH + r"\s+" + _DAY + r"(?:,?\s+(?:" + _YEAR + r"|'\d{2}))?(?![\w:])", re.IGNORECASE), 0.9),
    # 14 March 2021 / 14th of March / the 14th of March, 2021
    (re.compile(r"\b(?:the\s+)?" + _DAY + r"\s+(?:of\s+)?" + _MONTH + r"(?:,?\s+" + _YEAR + r")?\b", re.IGNORECASE), 0.9),
    # March 2021 / Mar '21 (month + year is more precise than a year)
    (re.compile(r"\b" + _MONTH + r",?\s+(?:of\s+)?(?:" + _YEAR + r"|'\d{2})\b", re.IGNORECASE), 0.85),
    # 03/14/2021, 3-14-21, 14.03.2021
    (re.compile(r"(?<![\d/.-])(?:0?[1-9]|[12]\d|3[01])([/.-])(?:0?[1-9]|[12]\d|3[01])\1(?:" + _YEAR + r"|\d{2})(?![\d/.-]*\d)"), 0.95),
    # 2021-03-14, 2021/3/14
    (re.compile(r"(?<![\d/.-])" + _YEAR + r"([/.-])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])(?:[T ]\d{2}:\d{2}(?::\d{2})?Z?)?(?![\d/.-]*\d)"), 0.95),
    # 3/14 after a date-ish word ("on 3/14", "DOB 3/14", "seen 3/14")
    (re.compile(r"\b(?:on|since|from|until|till|by|dob|d\.o\.b\.|date|seen|admitted|discharged|born|due|scheduled|dated|visit|appt|appointment|surgery|before|after)\s+(?P<d>(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01]))(?![\d/])", re.IGNORECASE), 0.8),
]

_NUM = r"(\d{1,3})"
AGE_PATTERNS = [
    # 47-year-old, 47 year old, 47-yr-old, 47 years old, 47 yrs old
    (re.compile(r"\b" + _NUM + r"(?:\s*|-)(?:years?|yrs?|yo)(?:\s*|-)old\b", re.IGNORECASE), "phrase"),
    # 47 yo / 47yo / 47 y/o / 47 y.o. / 47yoM / 47 yo F
    (re.compile(r"\b" + _NUM + r"\s*(?:y/?o|y\.o\.?|yr\.?\s?old)(?=[\s,.;:)MFmf]|$)"), "number"),
    # 47M, 47F, 47 M presents, 47-year male
    (re.compile(r"\b" + _NUM + r"(?:[MF]\b|\s?-?(?:year|yr)\s+(?:male|female|man|woman|boy|girl)\b)"), "number"),
    # age 47, aged 47, age: 47, ages 47, at the age of 47, age of 47
    (re.compile(r"\b(?:age[sd]?|at\s+the\s+age\s+of|age\s+of)\s*(?::|=|is|was|of)?\s*" + _NUM + r"\b(?!\s*(?:%|percent|mg|kg|lbs?|cm|mm|minutes?|hours?|days?|weeks?|months?|times|mmhg)\b)", re.IGNORECASE), "number"),
    # I'm 47 / he is 93 / she's 52 / turned 47 / turning 90 / who is 93
    # "my son Ben is 55", "the patient was 93", "Grandma turned 90"
    (re.compile(r"\b(?:son|daughter|mom|mum|mother|dad|father|wife|husband|brother|sister|patient|grandma|grandpa|grandmother|grandfather|grandson|granddaughter|aunt|uncle|child|kid|baby|boy|girl|friend|partner|boyfriend|girlfriend|spouse|neighbou?r|cousin|niece|nephew)\b[^.!?\n\d]{0,40}?\b(?:is|was|turned|turns|turning|aged)\s+" + _NUM + r"\b(?!\s*(?:%|percent|mg|kg|lbs?|pounds|cm|mm|minutes?|min|hours?|hrs?|days?|weeks?|months?|times|miles?|km|feet|ft|inches|in|dollars|points|steps|calories|units|ml|degrees|°|/|th|st|nd|rd|o'clock|am|pm|\.\d))", re.IGNORECASE), "number"),
    (re.compile(r"\b(?:i'?m|i\s+am|he'?s|she'?s|he\s+is|she\s+is|they\s+are|who\s+is|who'?s|turned|turning|turns|will\s+be|just\s+turned)\s+" + _NUM + r"\b(?!\s*(?:%|percent|mg|kg|lbs?|pounds|cm|mm|minutes?|min|hours?|hrs?|days?|weeks?|months?|times|miles?|km|feet|ft|inches|in|dollars|bucks|points|steps|calories|units|ml|degrees|°|/|th|st|nd|rd|o'clock|am|pm|a\.m\.|p\.m\.|people|kids|children|mins?|secs?|\.\d))", re.IGNORECASE), "number"),
]


class GatewayDateRecognizer(GatewayRecognizer):
    ENTITIES = ("DATE",)

    def find(self, text: str):
        hits: list[Hit] = []
        for rx, score in DATE_PATTERNS:
            group = "d" if "d" in rx.groupindex else 0
            for m in rx.finditer(text):
                hits.append(("DATE", m.start(group), m.end(group), score))
        return hits


class GatewayAgeRecognizer(GatewayRecognizer):
    """AGE spans: the number only, or the whole "47-year-old" phrase (its kind is in the span)."""

    ENTITIES = ("AGE",)

    def find(self, text: str):
        hits: list[Hit] = []
        for rx, kind in AGE_PATTERNS:
            for m in rx.finditer(text):
                age = int(m.group(1))
                if age > 125:
                    continue
                if kind == "phrase":
                    hits.append(("AGE", m.start(), m.end(), 0.9))
                else:
                    hits.append(("AGE", m.start(1), m.end(1), 0.85))
        return hits


def recognizers(config) -> list[GatewayRecognizer]:
    return [GatewayDateRecognizer(), GatewayAgeRecognizer()]
