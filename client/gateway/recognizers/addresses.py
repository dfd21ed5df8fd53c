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

from client.gateway.recognizers.common import COUNTRIES, STATE_CODE_RE, STATE_NAME_RE, GatewayRecognizer, Hit, is_common_word

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
_ZIP_CTX = re.compile(
    r"\b(?:zip\s+code|zipcode|zip|postal\s+code|postcode|post\s+code|plz|cep|code\s+postal)\s*(?:is|:|#|=|of)?\s*"
    r"(\d{5}(?:-\d{4})?|\d{3,6}|(?-i:[A-Z0-9]{2,4}[ -]?[A-Z0-9]{2,4}))\b", re.IGNORECASE)
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
                if any(c.isdigit() for c in m.group(1)):
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




# --------------------------------------------------------------------------- other countries' addresses
#
# Street grammars of other postal systems, written from their conventions rather than from any
# example list: (1) a street name built on a street-type word -- a suffix in Germanic, Nordic,
# Finnic and Hungarian names ("Beckergasse", "Skolvägen", "Dosentinkuja", "Ligetfalvai utca"), a
# prefix in Romance and Slavic ones ("rue ...", "Via ...", "ul. ...", "Rua ...") -- with the house
# number after the name, before it ("5, avenue Samson") or absent; (2) unit designators
# ("Apt. 12", "Flat 2", "piso 3"); (3) postcodes in each country's shape; (4) the city that stands
# next to a postcode on an address line.

_NAME_PART = r"(?:[^\W\d_][\w'’.]*(?:-[^\W\d_][\w'’.]*)*)"
_CAP_PART = r"(?:[^\W\d_a-zß-ÿ][\w'’.]*(?:-[^\W\d_][\w'’.]*)*)"  # capitalized (or caseless script)
_SEPARATE_TYPE_WORD = (
    r"(?i:utca|út|tér|körút|köz|sor|ulice|cesta|iela|gatvė|tänav|sokak|sokağı|caddesi|bulvarı|vej|gade|allé|weg|"
    r"stra(?:ss|ß)e|platz|gata|vegen|veien|straat|laan)"
)
_SUFFIX_STREET = (
    r"[^\W\d_a-zß-ÿ](?i:[\w'’-]*?(?:stra(?:ss|ß)e|str\.|gasse|weg|allee|platz|ring|damm|ufer|markt|steig|pfad|chaussee|"
    r"straat|laan|gracht|singel|plein|kade|dijk|steeg|hof|vej|gade|allé|stræde|plads|gatan|vägen|väg|gränd|torget|"
    r"veien|vegen|gata|gaten|bakken|faret|kuja|tie|katu|polku|kaari|rinne|raitti|ulice|náměstí|třída|utca|út|tér|"
    r"körút|köz|sor|cesta|ulica|iela|gatvė|tänav|sokak|sokağı|caddesi|bulvarı|boulevard|pad|kanaal|park|lei|baan|dreef))"
)
# a lower-case compound street name counts only with its house number ("pia-mader-weg 6")
_SUFFIX_LOWER = re.compile(
    r"(?<![\w-])[a-zß-ÿ][\w'’-]*?(?:stra(?:ss|ß)e|str\.|gasse|weg|allee|platz|straat|laan|gracht|vej|gade|gatan|vägen|"
    r"veien|gata|kuja|tie|katu|utca|ulica|lei|baan|dreef)[ \t]\d{1,5}[a-z]?(?:/\d{1,4})?(?![\w/])"
)
_PREFIX_STREET = (
    r"(?i:rue|avenue|av\.|boulevard|bd\.?|chemin|allée|impasse|place|quai|cours|route|via|viale|piazza|piazzale|corso|"
    r"largo|vicolo|strada|contrada|calle|avenida|avda\.?|paseo|plaza|camino|carrera|carretera|pasaje|ronda|travesía|"
    r"rua|travessa|praça|estrada|alameda|jardim|ladeira|ul\.|ulica|al\.|aleja|os\.|osiedle|pl\.|plac|bulevardul|"
    r"calea|intrarea|aleea|splaiul|strada|odos|leoforos|sq\.|plateia)"
)
_HOUSE_NO = r"\d{1,5}[a-zA-Z]?(?:\s?[/-]\s?\d{1,4}[a-zA-Z]?)?"
_CONNECT_WORDS = r"(?i:de|del|de la|de los|de las|da|do|dos|das|di|della|du|des|la|le|van|von|der|den|y|e|i)"
# cheap pre-checks (substring tests, much faster than a regex alternation searched at every
# position): the street patterns below only run on a text that holds a street-type word
_TYPE_WORDS = tuple(
    sorted({w.replace("(?:ss|ß)", "ss") for w in re.findall(r"[^|()?:\\]+(?:\(\?:ss\|ß\))?[^|()?:\\]*",
            _SUFFIX_STREET.split("(?i:", 1)[1] + "|" + _SEPARATE_TYPE_WORD + "|" + _PREFIX_STREET) if len(w.strip(".")) >= 2})
) + ("straße", "strasse")


# compound suffixes of three letters ("Dybensvej", "Kreidlstr.") are substrings; the two-letter
# prefixes ("ul.", "al.", "av.") count only as words, or every text would pass
_LONG_TYPE_WORDS = tuple(w for w in _TYPE_WORDS if len(w) >= 3)
_SHORT_TYPE_WORDS = frozenset(w for w in _TYPE_WORDS if len(w) < 3)
_LETTERS = re.compile(r"[^\W\d_]+")


def _has_type_word(text: str) -> bool:
    """A word that ends in a street-type word of three letters or more, or is a short one."""
    for word in _LETTERS.findall(text.lower()):
        if word.endswith(_LONG_TYPE_WORDS) or word in _SHORT_TYPE_WORDS:
            return True
    return False
_SUFFIX_ADDRESS = re.compile(
    r"(?<![\w-])(?:(?:" + _CAP_PART + r"[ -]){0,3}" + _SUFFIX_STREET + r"|" + _CAP_PART + r"[ -](?:" + _NAME_PART + r"[ -]){0,2}" + _SEPARATE_TYPE_WORD + r")"
    r"(?![\w])\.?(?:,?[ \t]?(?i:nr\.?|no\.?)?[ \t]?" + _HOUSE_NO + r"(?![\w/]))?"
)
_PREFIX_ADDRESS = re.compile(
    r"(?<![\w-])(?:" + _HOUSE_NO + r",?[ \t]+)?" + _PREFIX_STREET + r"[ \t]+(?:" + _NAME_PART + r"|" + _CONNECT_WORDS + r")"
    r"(?:[ \t]+(?:" + _CAP_PART + r"|" + _CONNECT_WORDS + r")){0,4}(?:,?[ \t]+(?i:nr\.?|no\.?|n\.?º?)?[ \t]?" + _HOUSE_NO + r"(?![\w/]))?"
)
_UNIT_LINE = re.compile(
    r"(?<![\w])(?i:apt|apartment|appt|appartamento|suite|ste|unit|flat|studio|piso|piano|bloco|bl|sc|ap|lgh|bus|etage|et|"
    r"postbox|postfach|postboks|apartado|caixa\s+postal|boîte\s+postale|po\s+box|box)\.?\s?#?\s?[A-Za-z]?\d{1,5}[A-Za-z]?\b"
)
_NUMBER_WORD = re.compile(r"\b(?i:number|no\.|nr\.|house\s+number)\s+(\d{1,5}[a-zA-Z]?)\b(?!\s*(?i:of|times|percent|%))")

# postcodes: each country's shape; the distinctive ones anywhere, the bare 4-6 digit ones only on
# an address line (next to a city, or after a street)
_POSTCODE_SHAPES = [
    re.compile(r"(?<![\w-])(?i:[A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})(?![\w-])"),  # UK
    re.compile(r"(?<![\w-])(?i:[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d)(?![\w-])"),  # Canada
    re.compile(r"(?<![\w-])\d{4} ?(?!MG|ML|KM|CM|MM|AM|PM|KG|GB|MB|KB|HP|BC|AD|US|UK|EU|ER|IU|CE|BP)[A-Z]{2}(?![\w-])"),  # Netherlands
    re.compile(r"(?<![\w-])\d{5}-\d{3}(?![\w-])"),  # Brazil
    re.compile(r"(?<![\w-])\d{4}-\d{3}(?![\w-])"),  # Portugal
    re.compile(r"(?<![\w-])\d{2}-\d{3}(?![\w-])"),  # Poland
    re.compile(r"(?<![\w-])(?i:H|CH|D|A|F|I|NL|B|DK|S|FI|N|CZ|SK|PL)-\d{4,5}(?![\w-])"),  # country-prefixed
    re.compile(r"(?<![\w-])(?i:[ACDEFHKNPRTVWXY]\d{2}W? ?[0-9ACDEFHKNPRTVWXY]{4})(?![\w-])"),  # Irish Eircode
    re.compile(r"\b(?:NSW|VIC|QLD|TAS|ACT|NT|SA|WA),? (\d{4})(?![\w-])"),  # Australia: state + 4 digits
]
_CITY_WORDS = r"(?:" + _CAP_PART + r"(?:[ -](?:" + _CAP_PART + r"|" + _CONNECT_WORDS + r"|sur|am|an|im|bei|upon|on)){0,3})"
_CODE_THEN_CITY = re.compile(r"(?:(?<=\n)|(?<=, )|(?<=^)|(?<=\s))(\d{4,6}|\d{3} \d{2}|[A-Z]{1,2}-\d{4,5})\s+(" + _CITY_WORDS + r")(?=\s*(?:$|\n|,|\.|\)|;| \())", re.MULTILINE)
_CITY_THEN_CODE = re.compile(r"(?:(?<=\n)|(?<=, )|(?<=^)|(?<=\n ))(" + _CITY_WORDS + r")(?:,? [A-Z]{2,3})?,? (\d{4,6})(?=\s*(?:$|\n|,|\.|;|:|\)|!|\?| [A-Z]))", re.MULTILINE)


_COUNTRY_CODE = re.compile(
    r"\b(?:(?P<country1>[A-Z][A-Za-z]+(?: [A-Z][A-Za-z]+)?(?: \([A-Za-z]+\))?),? (?P<code1>\d{3,6}(?: \d{2})?)|(?P<code2>\d{3,6}(?: \d{2})?),? (?P<country2>[A-Z][A-Za-z]+(?: [A-Z][a-z]+)?))\b"
)


# "Andrélei 885, 4657": capitalized street words, a house number, a comma, a bare postcode
_STREET_NO_CODE = re.compile(
    r"(?<![\w-])((?:" + _CAP_PART + r"[ -]){0,2}" + _CAP_PART + r"[ \t]" + _HOUSE_NO + r"),[ \t]?(\d{4,6}|\d{3} \d{2})(?![\w-])"
)
# an all-capitals name after a place preposition in mixed-case text ("grew up in APLARED")
_CAPS_PLACE = re.compile(r"\b(?i:in|from|near|to|at|of|visit|visiting|lives in)[ \t]+([^\W\d_a-z]{4,}(?:[ -][^\W\d_a-z]{3,})?)(?![\w])")


def _plausible_year(code: str) -> bool:
    return len(code) == 4 and code.isdigit() and 1950 <= int(code) <= 2035


class InternationalAddressRecognizer(GatewayRecognizer):
    """Streets, units, postcodes and postcode-cities of other countries' postal formats."""

    ENTITIES = ("ADDRESS", "LOCATION", "ZIP")

    def find(self, text: str):
        hits: list[Hit] = []
        typed = _has_type_word(text)
        for m in (_SUFFIX_ADDRESS.finditer(text) if typed else ()):
            has_number = any(c.isdigit() for c in m.group())
            if not has_number and is_common_word(m.group().split()[-1].rstrip(".")):
                continue  # "Hearing", "Spring": an English word, not a street without its number
            hits.append(("ADDRESS", m.start(), m.end(), 0.9 if has_number else 0.75))
        for m in (_SUFFIX_LOWER.finditer(text) if typed else ()):
            if not is_common_word(m.group().split()[0]):
                hits.append(("ADDRESS", m.start(), m.end(), 0.8))
        for m in (_PREFIX_ADDRESS.finditer(text) if typed else ()):
            value = m.group()
            words = value.split()
            if len(words) < 2 or not any(w[:1].isupper() for w in words[1:]) and not any(c.isdigit() for c in value):
                continue
            hits.append(("ADDRESS", m.start(), m.end(), 0.9 if any(c.isdigit() for c in value) else 0.7))
        if not text.isupper():
            for m in _CAPS_PLACE.finditer(text):
                place = m.group(1)
                if place.upper() == place and not is_common_word(place.lower()) and place.casefold() not in COUNTRIES:
                    hits.append(("LOCATION", m.start(1), m.end(1), 0.6))
        if not any(ch.isdigit() for ch in text):
            return hits
        for m in _STREET_NO_CODE.finditer(text):
            if not _plausible_year(m.group(2)):
                hits.append(("ADDRESS", m.start(1), m.end(1), 0.85))
                hits.append(("ZIP", m.start(2), m.end(2), 0.85))
        for m in _UNIT_LINE.finditer(text):
            hits.append(("ADDRESS", m.start(), m.end(), 0.6))
        for m in _NUMBER_WORD.finditer(text):
            hits.append(("ADDRESS", m.start(1), m.end(1), 0.6))
        for rx in _POSTCODE_SHAPES:
            for m in rx.finditer(text):
                g = 1 if rx.groups else 0
                hits.append(("ZIP", m.start(g), m.end(g), 0.85))
        for m in _CODE_THEN_CITY.finditer(text):
            if _plausible_year(m.group(1)) or m.group(2).split()[0].casefold() in _STREET_STOPWORDS:
                continue
            if m.group(2).casefold() in COUNTRIES:
                hits.append(("ZIP", m.start(1), m.end(1), 0.85))
                continue
            hits.append(("ZIP", m.start(1), m.end(1), 0.9))
            hits.append(("LOCATION", m.start(2), m.end(2), 0.8))
        for m in _COUNTRY_CODE.finditer(text):  # "Finland 5771", "8185 Switzerland": a postcode beside a country
            country = (m.group("country1") or m.group("country2")).split(" (")[0].casefold()
            code = "code1" if m.group("code1") else "code2"
            if country in COUNTRIES and not _plausible_year(m.group(code)):
                hits.append(("ZIP", m.start(code), m.end(code), 0.85))
        for m in _CITY_THEN_CODE.finditer(text):
            if _plausible_year(m.group(2)) or m.group(1) in _NOT_CITY or m.group(1).casefold() in COUNTRIES:
                continue
            hits.append(("LOCATION", m.start(1), m.end(1), 0.75))
            hits.append(("ZIP", m.start(2), m.end(2), 0.85))
        return hits


def recognizers(config) -> list[GatewayRecognizer]:
    return [GatewayAddressRecognizer(), InternationalAddressRecognizer()]
