"""Federations of non-IID client corpora, JSONL I/O and the public corpus."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from fedpriv.errors import ConfigError, DataError
from simulations.synthetic.common import Record, derive_seed
from simulations.synthetic.hospital import HospitalGenerator, specialty_for
from simulations.synthetic.phone import Persona, PhoneGenerator
from simulations.synthetic.public import public_records

PROFILES: tuple[str, ...] = ("hospital", "phone")
DEFAULT_NUM_CLIENTS: dict[str, int] = {"hospital": 4, "phone": 20}
DEFAULT_PII_FRACTION = 0.3
DEFAULT_PUBLIC_RECORDS = 20000
DEFAULT_HELDOUT_FRACTION = 0.05

_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check(profile: str, num_clients: int | None, records_per_client: int, pii_fraction: float) -> int:
    if profile not in PROFILES:
        raise ConfigError("profile", f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    if num_clients is None:
        num_clients = DEFAULT_NUM_CLIENTS[profile]
    if isinstance(num_clients, bool) or not isinstance(num_clients, int) or num_clients < 1:
        raise ConfigError("num_clients", f"must be an integer >= 1, got {num_clients!r}")
    if isinstance(records_per_client, bool) or not isinstance(records_per_client, int) or records_per_client < 0:
        raise ConfigError("records_per_client", f"must be an integer >= 0, got {records_per_client!r}")
    if not 0.0 <= pii_fraction <= 1.0:
        raise ConfigError("pii_fraction", f"must be within [0, 1], got {pii_fraction!r}")
    return num_clients


def client_ids(profile: str, num_clients: int | None = None) -> list[str]:
    """Stable, filename-safe, lexicographically sortable client ids (e.g. ``hospital-00-cardiology``)."""
    n = _check(profile, num_clients, 0, 0.0)
    width = max(2, len(str(n - 1)))
    if profile == "hospital":
        return [f"hospital-{i:0{width}d}-{specialty_for(i).name}" for i in range(n)]
    return [f"phone-{i:0{width}d}" for i in range(n)]


def _pii_mask(rng: random.Random, n: int, fraction: float) -> list[bool]:
    """Exactly round(n * fraction) records carry identifiers, at random positions."""
    k = round(n * fraction)
    chosen = set(rng.sample(range(n), k))
    return [i in chosen for i in range(n)]


def generate_federation_records(
    profile: str,
    num_clients: int | None = None,
    records_per_client: int = 200,
    seed: int = 0,
    *,
    pii_fraction: float = DEFAULT_PII_FRACTION,
) -> dict[str, list[Record]]:
    """Like :func:`generate_federation` but each record keeps its PII ground truth
    (``Record.pii``: type and offsets of every planted identifier)."""
    n = _check(profile, num_clients, records_per_client, pii_fraction)
    federation: dict[str, list[Record]] = {}
    for index, cid in enumerate(client_ids(profile, n)):
        # A client's data depends only on (seed, profile, index): adding clients never changes
        # the existing ones.
        rng = random.Random(derive_seed(seed, profile, index))
        if profile == "hospital":
            gen = HospitalGenerator(specialty_for(index), rng)
        else:
            persona = Persona.random(random.Random(derive_seed(seed, profile, index, "persona")))
            gen = PhoneGenerator(persona, rng)
        mask = _pii_mask(random.Random(derive_seed(seed, profile, index, "pii")), records_per_client, pii_fraction)
        federation[cid] = [gen.record(with_pii) for with_pii in mask]
    return federation


def generate_federation(
    profile: str,
    num_clients: int | None = None,
    records_per_client: int = 200,
    seed: int = 0,
    *,
    pii_fraction: float = DEFAULT_PII_FRACTION,
) -> dict[str, list[str]]:
    """client_id -> texts. Deterministic: same arguments -> identical output.

    ``hospital`` clients are departments (cardiology, oncology, pediatrics, orthopedics, ...);
    ``phone`` clients are users with their own texting style. About ``pii_fraction`` of each
    client's records carry (fake) names, MRNs, phone numbers, dates, addresses or emails.
    """
    records = generate_federation_records(profile, num_clients, records_per_client, seed, pii_fraction=pii_fraction)
    return {cid: [r.text for r in recs] for cid, recs in records.items()}


def write_federation(out_dir: Path, federation: dict[str, list[str]]) -> list[Path]:
    """Write one ``<client_id>.jsonl`` per client (lines ``{"text": ...}``); returns the paths, sorted."""
    out_dir = Path(out_dir)
    for cid in federation:
        if not isinstance(cid, str) or not _CLIENT_ID_RE.match(cid):
            raise ConfigError("client_id", f"{cid!r} is not a safe file name")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for cid in sorted(federation):
        path = out_dir / f"{cid}.jsonl"
        lines = [json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in federation[cid]]
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
        paths.append(path)
    return paths


def read_federation(in_dir: Path) -> dict[str, list[str]]:
    """Inverse of :func:`write_federation` (reads every ``*.jsonl`` in ``in_dir``)."""
    in_dir = Path(in_dir)
    federation: dict[str, list[str]] = {}
    for path in sorted(in_dir.glob("*.jsonl")):
        texts: list[str] = []
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise DataError(f'{path}:{lineno}: expected an object with a string "text" field')
                texts.append(obj["text"])
        federation[path.stem] = texts
    return federation


def public_corpus(num_records: int = DEFAULT_PUBLIC_RECORDS, seed: int = 0) -> list[str]:
    """Generic medical notes + neutral messages (no client styles), for pretraining."""
    if isinstance(num_records, bool) or not isinstance(num_records, int) or num_records < 0:
        raise ConfigError("num_records", f"must be an integer >= 0, got {num_records!r}")
    return public_records(num_records, seed)


def public_split(
    num_records: int = DEFAULT_PUBLIC_RECORDS,
    seed: int = 0,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
) -> tuple[list[str], list[str]]:
    """``(train, heldout)``: the last ``heldout_fraction`` of :func:`public_corpus` is held out."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ConfigError("heldout_fraction", f"must be within (0, 1), got {heldout_fraction!r}")
    corpus = public_corpus(num_records, seed)
    n_heldout = max(1, round(len(corpus) * heldout_fraction)) if corpus else 0
    return corpus[: len(corpus) - n_heldout], corpus[len(corpus) - n_heldout :]
