"""Canary records for auditing a simulated run (`fedpriv simulate --canaries M`, `fedpriv audit`).

Two kinds, both written into the devices' data files before the federation starts and logged in
`RUN_DIR/canaries.json` (seeded, so the same seed gives the same canaries):

* **one-run canaries** (Steinke, Nasr, Jagielski 2023): M records of random words, each included
  with probability ½, independently, in the training data of one device chosen at random. The
  ones left out are the audit's controls. An included canary is placed where the device's own
  train / held-out split (`fedpriv.data.split_records`) puts it in the train split, so "included"
  means "trained on", exactly.
* **secret canaries** (Carlini et al. 2019): sentences carrying a random secret of a known format
  (an 8-digit MRN, a 7-digit phone number), inserted with a number of repetitions, for the
  exposure test.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fedpriv.data import split_records
from fedpriv.files import write_atomically
from simulations.synthetic.common import derive_seed

CANARY_FILE = "canaries.json"
ONE_RUN_WORDS = 10  # random words per canary: enough entropy that a model cannot know one it never saw
# Secret formats: (kind, sentence with {secret}, number of digits of the secret).
SECRET_FORMATS = (
    ("mrn", "The medical record number of the patient is {secret}.", 8),
    ("phone", "You can reach me on my private line 555-{secret}.", 7),
)
SECRET_REPETITIONS = (1, 4, 16)
_WORDS = (
    "amber basil cedar delta ember fable garnet harbor indigo jasper kelp lumen mosaic nectar onyx pebble quartz "
    "raven saffron tundra umber velvet willow xenon yarrow zephyr acorn bramble cobalt dune echo fennel glacier "
    "heron ivory juniper kestrel lagoon meadow nimbus orchid prairie quill russet sierra thistle upland vapor "
    "walnut yonder zinnia anchor beacon canyon drift estuary falcon grove hollow islet jetty knoll ledge marsh"
).split()


@dataclass(frozen=True)
class Canary:
    id: str
    kind: str  # "one-run", or a secret format ("mrn", "phone")
    text: str
    client_id: str  # the device whose data it was (or, when not included, would have been) written into
    included: bool
    secret: str = ""  # secret canaries: the random part
    repetitions: int = 1  # secret canaries: copies written into the device's data


def plan_canaries(client_ids: Sequence[str], count: int, seed: int, secrets_per_format: int = 2) -> list[Canary]:
    """`count` one-run canaries and, when count > 0, secret canaries of every format and repetition."""
    if count < 0:
        raise ValueError(f"canaries must be zero or more, got {count}")
    if count == 0:
        return []
    if not client_ids:
        raise ValueError("no devices to put canaries into")
    rng = random.Random(derive_seed(seed, "canaries"))
    plan = [
        Canary(f"c{i:05d}", "one-run", " ".join(rng.choice(_WORDS) for _ in range(ONE_RUN_WORDS)) + ".",
               rng.choice(list(client_ids)), rng.random() < 0.5)
        for i in range(count)
    ]
    for kind, template, digits in SECRET_FORMATS:
        for repetitions in SECRET_REPETITIONS:
            for j in range(secrets_per_format):
                secret = "".join(rng.choice("0123456789") for _ in range(digits))
                plan.append(Canary(f"{kind}-r{repetitions}-{j}", kind, template.format(secret=secret),
                                   rng.choice(list(client_ids)), True, secret, repetitions))
    return plan


def secret_space(kind: str) -> tuple[str, int]:
    """(template, digits) of a secret format."""
    for name, template, digits in SECRET_FORMATS:
        if name == kind:
            return template, digits
    raise KeyError(kind)


def with_canaries(client_id: str, texts: Sequence[str], canaries: Sequence[Canary], eval_fraction: float, seed: int) -> list[str]:
    """The device's records with its included canaries placed at train positions of its own split."""
    mine = [c for c in canaries if c.included and c.client_id == client_id]
    inserted = [c.text for c in mine for _ in range(c.repetitions)]
    if not inserted:
        return list(texts)
    total = len(texts) + len(inserted)
    probe = split_records(client_id, [str(i) for i in range(total)], eval_fraction, seed)
    train_positions = sorted(int(i) for i in probe.train)
    if len(train_positions) < len(inserted):
        raise ValueError(f"{client_id}: {len(inserted)} canary records do not fit in a train split of {len(train_positions)}")
    rng = random.Random(derive_seed(seed, "canary-positions", client_id))
    canary_positions = set(rng.sample(train_positions, len(inserted)))
    out: list[str] = []
    canary_iter, record_iter = iter(inserted), iter(texts)
    for position in range(total):
        out.append(next(canary_iter) if position in canary_positions else next(record_iter))
    return out


def insert_canaries(federation: Mapping[str, Sequence[str]], canaries: Sequence[Canary], eval_fraction: float, seed: int) -> dict[str, list[str]]:
    return {cid: with_canaries(cid, texts, canaries, eval_fraction, seed) for cid, texts in federation.items()}


def save_canaries(run_dir: Path, canaries: Sequence[Canary], seed: int) -> Path:
    path = Path(run_dir) / CANARY_FILE
    record = {"seed": seed, "one_run": sum(c.kind == "one-run" for c in canaries),
              "canaries": [asdict(c) for c in canaries]}
    write_atomically(path, json.dumps(record, indent=1))
    return path


def load_canaries(run_dir: Path) -> list[Canary]:
    raw = json.loads((Path(run_dir) / CANARY_FILE).read_text())
    return [Canary(**entry) for entry in raw["canaries"]]
