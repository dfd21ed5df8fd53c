"""Generalize quasi-identifiers instead of keeping (or merely masking) them.

* ages -> bands: "47-year-old" -> "40-49 year old", "aged 47" -> "aged 40-49"; any age over 89 ->
  "90 or older" ("90+ year old" in the adjective form), as HIPAA Safe Harbor requires;
* dates -> their year: "March 14, 2021" -> "2021", "3/14/21" -> "2021"; a date without a year
  cannot be generalized to one and becomes a placeholder instead (``None`` here);
* places smaller than a state -> the state, when the place name is unambiguous ("moved to Tulsa"
  -> "moved to Oklahoma"); otherwise ``None`` (the caller uses a placeholder).

The functions return ``None`` when they cannot generalize; the sanitizer then substitutes a
placeholder, so a value is never kept because abstraction failed.
"""

from __future__ import annotations

import datetime as _dt
import re

from client.gateway.recognizers.common import US_STATES, us_places

AGE_BAND_LABEL_RE = re.compile(r"\b\d{1,3}-\d{1,3}\b|\b90 or older\b|\b90\+")
_AGE_NUMBER = re.compile(r"\d{1,3}")
_AGE_PHRASE = re.compile(r"^(\d{1,3})(\s*|-)(years?|yrs?|yo)(\s*|-)old$", re.IGNORECASE)
_YEAR4 = re.compile(r"(?<!\d)(19|20)\d{2}(?!\d)")
_NUMERIC_DATE = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{2}|\d{4})$")
_TWO_DIGIT_YEAR = re.compile(r"'(\d{2})\b")


def age_band(age: int, width: int = 10) -> str:
    if age > 89:
        return "90 or older"
    low = (age // width) * width
    high = min(low + width - 1, 89)
    return f"{low}-{high}"


def generalize_age(span_text: str, width: int = 10) -> str | None:
    """Replacement for an AGE span: a bare number or a "47-year-old" phrase."""
    text = span_text.strip()
    m = _AGE_PHRASE.match(text)
    if m:
        age = int(m.group(1))
        plural = m.group(3).lower().startswith("years") or m.group(3).lower() == "yrs"
        if age > 89:
            return "90 or older" if plural else "90+ year old"
        return f"{age_band(age, width)} {'years' if plural else 'year'} old"
    if text.isdigit():
        return age_band(int(text), width)
    return None


def generalize_date(span_text: str, today: _dt.date | None = None) -> str | None:
    """The year of a date, or None when the date has no year."""
    text = span_text.strip()
    m = _YEAR4.search(text)
    if m:
        return m.group()
    m = _NUMERIC_DATE.match(text)
    if m and len(m.group(4)) == 2:
        return _expand_two_digit_year(int(m.group(4)), today)
    m = _TWO_DIGIT_YEAR.search(text)
    if m:
        return _expand_two_digit_year(int(m.group(1)), today)
    return None


def _expand_two_digit_year(yy: int, today: _dt.date | None) -> str:
    current = (today or _dt.date.today()).year
    year = 2000 + yy
    if year > current + 1:
        year -= 100
    return str(year)


def generalize_place(span_text: str) -> str | None:
    """The state of an unambiguous US place name, else None."""
    name = " ".join(span_text.split())
    place = us_places().get(name.casefold())
    if place is None or place.n_states != 1:
        return None
    return US_STATES.get(place.state)


# ZIP3 prefix ranges -> state (USPS assignment; used to sanity-check ZIP+state pairs and to
# generalize a ZIP to its state when asked).
_ZIP3_RANGES = [
    (5, 5, "NY"), (6, 9, "PR"), (10, 27, "MA"), (28, 29, "RI"), (30, 38, "NH"), (39, 49, "ME"),
    (50, 54, "VT"), (55, 55, "MA"), (56, 59, "VT"), (60, 69, "CT"), (70, 89, "NJ"), (100, 149, "NY"),
    (150, 196, "PA"), (197, 199, "DE"), (200, 200, "DC"), (201, 201, "VA"), (202, 205, "DC"),
    (206, 219, "MD"), (220, 246, "VA"), (247, 268, "WV"), (270, 289, "NC"), (290, 299, "SC"),
    (300, 319, "GA"), (320, 349, "FL"), (350, 369, "AL"), (370, 385, "TN"), (386, 397, "MS"),
    (398, 399, "GA"), (400, 427, "KY"), (430, 459, "OH"), (460, 479, "IN"), (480, 499, "MI"),
    (500, 528, "IA"), (530, 549, "WI"), (550, 567, "MN"), (569, 569, "DC"), (570, 577, "SD"),
    (580, 588, "ND"), (590, 599, "MT"), (600, 629, "IL"), (630, 658, "MO"), (660, 679, "KS"),
    (680, 693, "NE"), (700, 714, "LA"), (716, 729, "AR"), (730, 732, "OK"), (733, 733, "TX"),
    (734, 749, "OK"), (750, 799, "TX"), (800, 816, "CO"), (820, 831, "WY"), (832, 838, "ID"),
    (840, 847, "UT"), (850, 865, "AZ"), (870, 884, "NM"), (885, 885, "TX"), (889, 898, "NV"),
    (900, 961, "CA"), (967, 968, "HI"), (970, 979, "OR"), (980, 994, "WA"), (995, 999, "AK"),
]


def zip_to_state(zip_code: str) -> str | None:
    digits = re.sub(r"\D", "", zip_code)[:3]
    if len(digits) != 3:
        return None
    prefix = int(digits)
    for low, high, state in _ZIP3_RANGES:
        if low <= prefix <= high:
            return US_STATES[state]
    return None
