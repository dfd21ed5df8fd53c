"""Street addresses and geography smaller than a state.

* ADDRESS: house number + street name words + street suffix (Street, St., Ave, Blvd, Lane, Way,
  ... ~80 USPS suffixes and abbreviations) + optional unit (Apt 4B, Suite 210, #12); PO boxes;
* LOCATION: "City, ST" / "City, State" (any capitalized words before a state), counties
  ("Cook County", "Orleans Parish");
* ZIP: 5-digit / ZIP+4 codes next to a state or after "zip"/"postal code".
Capitalized place names in running text ("moved to Tulsa") are found by names.py.
"""

from __future__ import annotations

import re

from client.gateway.recognizers.common import STATE_CODE_RE, STATE_NAME_RE, GatewayRecognizer, Hit

STREET_SUFFIXES = (
    "street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|circle|cir|way|place|pl|"
    "terrace|ter|trail|trl|parkway|pkwy|highway|hwy|square|sq|loop|run|path|pike|alley|aly|crescent|cres|"
    "close|row|walk|plaza|plz|commons|point|pt|ridge|heights|hts|hill|hills|view|vista|park|crossing|xing|"
    "grove|gardens|gdns|green|glen|hollow|meadow|meadows|estates|manor|landing|pass|cove|creek|brook|"
    "bend|harbor|harbour|isle|junction|jct|key|knoll|mews|mill|mills|orchard|oval|port|ranch|shore|"
    "shores|spring|springs|station|summit|turnpike|tpke|valley|village|ville|wells|woods|expressway|expy|"
    "freeway|fwy|causeway|center|ctr|route|rte|broadway|esplanade|promenade|quay|wharf|fork|forks|"
    "lake|lakes|field|fields|flat|flats|ford|fords|forest|falls|gateway|haven|mall|motorway|overpass|"
    "stravenue|track|trace|union|underpass|viaduct|vis|way|ways|burg|bypass|camp|canyon|cape|cliff|cliffs|"
    "island|islands|isle|mission|loaf|lock|locks|mount|mountain|mountains|neck|radial|ramp|rest|shoal|"
    "shoals|skyway|spur|stream|throughway|tunnel|unions|well|wall|annex|arcade|bay|beach|bluff|bluffs|"
    "bottom|branch|bridge|brooks|crest|curve|dale|dam|divide|estate|extension|ext|ferry|fort|garden|"
    "glens|greens|harbors|inlet|junctions|keys|knolls|land|light|lights|lodge|manors|orchard|parks|"
    "passage|pine|pines|plain|plains|points|ports|prairie|rapid|rapids|ridges|river|roads|routes|"
    "squares|streets|trafficway|trailer|valleys|views|villages|vista|walks|ville|circles|corner|corners|"
    "course|courts|coves|creeks|crossroad|drives|fall|fields|groves|heights|hills|lakes|mills|oval|"
    "pointe|prt|ranch|row|run|shores|spurs|station|stravenue|terrace|trail|trails|turnpike|way"
)
_CORE_SUFFIXES = "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|circle|parkway|highway|hwy|trail"
_UNIT = r"(?:,?\s*(?i:apt|apartment|suite|ste|unit|room|rm|floor|fl|bldg|building|#)\.?\s*#?\s*[A-Za-z]?\d+[A-Za-z]?(?:-\d+)?|,?\s*#\s*\d+[A-Za-z]?)?"
_DIRECTION = r"(?:(?:[NSEW]|NE|NW|SE|SW|North|South|East|West)\.?\s+)?"
_NAME_WORD = r"(?:[A-Z][\w'’.-]*|\d+(?:st|nd|rd|th))"
_STREET = re.compile(
    r"(?<![\w#-])\d{1,6}[A-Za-z]?(?:-\d{1,4})?\s+" + _DIRECTION
    + r"(?:" + _NAME_WORD + r"\s+){1,4}(?:" + STREET_SUFFIXES.replace("|", "|").upper() + "|" + "|".join(
        w.capitalize() for w in STREET_SUFFIXES.split("|")
    ) + r")\b\.?" + r"(?:\s+(?:[NSEW]|NE|NW|SE|SW)\b\.?)?" + _UNIT
)
# lower-case / sloppy addresses: "123 main st", "45 oak avenue apt 2" (core suffixes only)
_STREET_LOWER = re.compile(
    r"(?<![\w#-])\d{1,6}[a-z]?\s+" + _DIRECTION + r"(?:[a-z][a-z'-]{1,20}\s+){1,3}(?:" + _CORE_SUFFIXES + r")\b\.?" + _UNIT,
    re.IGNORECASE,
)
_STREET_STOPWORDS = {
    "the", "a", "an", "of", "to", "in", "on", "at", "for", "and", "or", "my", "your", "his", "her",
    "their", "our", "times", "blocks", "miles", "minutes", "hours", "days", "weeks", "months",
    "years", "more", "less", "than", "down", "up", "by", "per", "each", "every", "with", "from",
    "mg", "ml", "pills", "tablets", "doses", "cups", "steps", "feet", "kids", "people", "cars",
}
_PO_BOX = re.compile(r"\b(?:P\.?\s?O\.?|Post\s+Office)\s*Box\s+\d+\b", re.IGNORECASE)
_CITY_STATE = re.compile(
    r"\b((?:[A-Z][a-zA-Z'’.-]+|St\.|Ft\.|Mt\.)(?:[ -](?:[A-Z][a-zA-Z'’.-]+|de|la|del|on|upon|of))*?)\s*,\s*(?:"
    + STATE_CODE_RE + r")\b(?:\.?\s+(\d{5}(?:-\d{4})?))?"
)
_CITY_STATE_NAME = re.compile(
    r"\b((?:[A-Z][a-zA-Z'’.-]+|St\.|Ft\.|Mt\.)(?:[ -](?:[A-Z][a-zA-Z'’.-]+|de|la|del))*?)\s*,\s*(?:" + STATE_NAME_RE + r")\b(?:\s+(\d{5}(?:-\d{4})?))?"
)
_STATE_ZIP = re.compile(r"\b(?:" + STATE_CODE_RE + r"|" + STATE_NAME_RE + r")\.?,?\s+(\d{5}(?:-\d{4})?)\b")
_ZIP_CTX = re.compile(r"\b(?:zip|zipcode|zip\s+code|postal\s+code|postcode|post\s+code)\s*(?:is|:|#|=|of)?\s*(\d{5}(?:-\d{4})?)\b", re.IGNORECASE)
_COUNTY = re.compile(r"\b(?:[A-Z][a-z'’.-]+\s+){1,3}(?:County|Parish|Borough|Township|Twp\.?)\b")
_NOT_CITY = {"Dear", "Hi", "Hello", "Hey", "Thanks", "Re", "Attn", "Sincerely", "Regards", "Love", "Best", "Cheers", "Yes", "No", "Ok", "Okay", "Well", "So", "And", "But", "Then", "Also", "I"}


class GatewayAddressRecognizer(GatewayRecognizer):
    ENTITIES = ("ADDRESS", "LOCATION", "ZIP")

    def find(self, text: str):
        hits: list[Hit] = []
        has_digit = any(ch.isdigit() for ch in text)
        if has_digit:
            for m in _STREET.finditer(text):
                hits.append(("ADDRESS", m.start(), m.end(), 0.95))
            for m in _STREET_LOWER.finditer(text):
                words = m.group().lower().split()
                if any(w.strip(".,") in _STREET_STOPWORDS for w in words[1:-1]):
                    continue
                hits.append(("ADDRESS", m.start(), m.end(), 0.8))
            for m in _PO_BOX.finditer(text):
                hits.append(("ADDRESS", m.start(), m.end(), 0.95))
            for m in _STATE_ZIP.finditer(text):
                hits.append(("ZIP", m.start(1), m.end(1), 0.9))
            for m in _ZIP_CTX.finditer(text):
                hits.append(("ZIP", m.start(1), m.end(1), 0.9))
        if "," in text:
            for rx in (_CITY_STATE, _CITY_STATE_NAME):
                for m in rx.finditer(text):
                    city = m.group(1)
                    start = m.start(1)
                    words = city.split()
                    # drop leading sentence words ("Thanks, ..." is not a city; "Visiting Austin, TX")
                    while words and (words[0] in _NOT_CITY):
                        start += len(words[0]) + 1
                        words = words[1:]
                    if not words:
                        continue
                    hits.append(("LOCATION", start, m.end(1), 0.9))
                    if m.group(2):
                        hits.append(("ZIP", m.start(2), m.end(2), 0.95))
        if "County" in text or "Parish" in text or "Borough" in text or "Township" in text or "Twp" in text:
            for m in _COUNTY.finditer(text):
                hits.append(("LOCATION", m.start(), m.end(), 0.85))
        return hits


def recognizers(config) -> list[GatewayRecognizer]:
    return [GatewayAddressRecognizer()]
