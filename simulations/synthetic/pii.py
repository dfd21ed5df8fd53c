"""Realistic (fake) personal identifiers: names, MRNs, phone numbers, dates, addresses, emails.

Everything is drawn from an explicit ``random.Random`` (Faker is handed that same generator), so
output depends only on the seed. Nothing here depends on today's date.
"""

from __future__ import annotations

import datetime as _dt
import random
from functools import lru_cache

PII_TYPES = ("PERSON", "MRN", "PHONE", "DATE", "LOCATION", "EMAIL")

# (label, identifier) formats: ground-truth spans cover the identifier, not the label.
MRN_STYLES = (
    ("MRN ", "{d7}"),
    ("MRN: ", "{d8}"),
    ("MRN# ", "{d2}-{d6}"),
    ("MR#", "{d9}"),
    ("MRN ", "{a2}{d6}"),
)
PHONE_STYLES = (
    "({area}) {ex}-{line}",
    "{area}-{ex}-{line}",
    "{area}.{ex}.{line}",
    "+1 {area} {ex} {line}",
    "+1-{area}-{ex}-{line}",
)
DATE_STYLES = ("%m/%d/%Y", "%Y-%m-%d", "%b %d, %Y", "%d %B %Y", "%m/%d/%y", "%B %d")

_DATE_START = _dt.date(2018, 1, 1).toordinal()
_DATE_END = _dt.date(2025, 12, 31).toordinal()
_EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "proton.me", "aol.com")


@lru_cache(maxsize=1)
def _faker():  # import + locale loading is the slow part: do it once per process
    from faker import Faker

    return Faker("en_US")


class PIIFactory:
    """Draws identifiers. ``mrn_style`` / ``phone_style`` / ``date_style`` let one hospital or
    one user keep a consistent format (None = pick a format per call)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        mrn_style: tuple[str, str] | None = None,
        phone_style: str | None = None,
        date_style: str | None = None,
    ) -> None:
        self.rng = rng
        self.mrn_style = mrn_style
        self.phone_style = phone_style
        self.date_style = date_style

    @property
    def fake(self):
        fake = _faker()
        fake.random = self.rng  # Faker draws from *our* generator: no hidden global state
        return fake

    # -- people -------------------------------------------------------------------------------
    def first_name(self) -> str:
        return self.fake.first_name()

    def last_name(self) -> str:
        return self.fake.last_name()

    def full_name(self) -> str:
        fake = self.fake
        return f"{fake.first_name()} {fake.last_name()}"

    def clinician_name(self) -> str:
        return self.fake.last_name()

    # -- identifiers --------------------------------------------------------------------------
    def mrn(self) -> tuple[str, str]:
        """``(label, identifier)``, e.g. ``("MRN: ", "00482913")``."""
        label, style = self.mrn_style or self.rng.choice(MRN_STYLES)
        r = self.rng
        return label, style.format(
            d2=f"{r.randrange(100):02d}",
            d6=f"{r.randrange(10**6):06d}",
            d7=f"{r.randrange(10**6, 10**7)}",
            d8=f"{r.randrange(10**8):08d}",
            d9=f"{r.randrange(10**8, 10**9)}",
            a2="".join(r.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2)),
        )

    def phone(self) -> str:
        style = self.phone_style or self.rng.choice(PHONE_STYLES)
        r = self.rng
        return style.format(
            area=f"{r.randint(201, 989)}", ex=f"{r.randint(200, 999)}", line=f"{r.randrange(10**4):04d}"
        )

    def date(self, start_year: int | None = None, end_year: int | None = None, style: str | None = None) -> str:
        lo = _dt.date(start_year, 1, 1).toordinal() if start_year else _DATE_START
        hi = _dt.date(end_year, 12, 31).toordinal() if end_year else _DATE_END
        day = _dt.date.fromordinal(self.rng.randint(lo, hi))
        fmt = style or self.date_style or self.rng.choice(DATE_STYLES)
        return day.strftime(fmt)

    def dob(self, age: int | None = None) -> str:
        age = age if age is not None else self.rng.randint(1, 95)
        year = 2025 - age
        return self.date(year, year, style=self.rng.choice(DATE_STYLES[:5]))

    def street_address(self) -> str:
        return self.fake.street_address()

    def address(self) -> str:
        fake = self.fake
        return f"{fake.street_address()}, {fake.city()}, {fake.state_abbr()} {fake.postcode()}"

    def city(self) -> str:
        return self.fake.city()

    def email(self, first: str | None = None, last: str | None = None) -> str:
        r = self.rng
        first = (first or self.first_name()).lower()
        last = (last or self.last_name()).lower()
        local = r.choice(
            (
                f"{first}.{last}",
                f"{first}{last}",
                f"{first[0]}{last}",
                f"{first}_{last}{r.randint(1, 99)}",
                f"{first}{r.randint(70, 2005)}",
                f"{last}.{first[0]}",
            )
        )
        return f"{local}@{r.choice(_EMAIL_DOMAINS)}"
