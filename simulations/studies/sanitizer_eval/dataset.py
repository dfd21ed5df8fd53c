"""The evaluation set, split ONCE into a development part and a frozen test part, both stored.

``python -m simulations.studies.sanitizer_eval build`` generates ``PER_SOURCE`` prompts of every
source (``sources.py``, seed ``BUILD_SEED``), shuffles each source with a fixed seed and writes half
to ``assets/eval_dev.jsonl.gz`` and half to ``assets/eval_test.jsonl.gz``. It refuses to overwrite
either file: the split is made once, so nothing tuned on the development part can move prompts
into or out of the test part.

The test part is scored only when a change is finished: ``--split test`` needs ``--final``, and
every such scoring is appended to ``assets/test_scorings.jsonl`` (when, commit, detector, the
headline numbers), so how often the test part was looked at is on record.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import subprocess
from pathlib import Path

from simulations.studies.sanitizer_eval.prompts import EvalPrompt, GoldSpan
from simulations.studies.sanitizer_eval.sources import SOURCES, generate_source

ASSETS = Path(__file__).resolve().parent / "assets"
SPLIT_FILES = {"dev": ASSETS / "eval_dev.jsonl.gz", "test": ASSETS / "eval_test.jsonl.gz"}
SCORINGS = ASSETS / "test_scorings.jsonl"
PER_SOURCE = 400
BUILD_SEED = 2101  # issue 21


class FrozenSplitError(RuntimeError):
    """The stored split would be changed, or the test part scored without --final."""


def build(
    per_source: int = PER_SOURCE, seed: int = BUILD_SEED, assets: Path = ASSETS, presidio_raw: Path | None = None
) -> dict[str, int]:
    files = {name: assets / path.name for name, path in SPLIT_FILES.items()}
    existing = [str(f) for f in files.values() if f.exists()]
    if existing:
        raise FrozenSplitError(f"the split is made once and is already stored ({', '.join(existing)}); not rebuilt")
    parts: dict[str, list[EvalPrompt]] = {"dev": [], "test": []}
    for source in SOURCES:
        prompts = generate_source(source, per_source, seed, presidio_raw)
        random.Random(f"split-{seed}-{source}").shuffle(prompts)
        half = len(prompts) // 2
        parts["dev"].extend(prompts[:half])
        parts["test"].extend(prompts[half:])
    assets.mkdir(parents=True, exist_ok=True)
    for name, prompts in parts.items():
        with gzip.open(files[name], "wt", encoding="utf-8") as fh:
            for p in prompts:
                fh.write(json.dumps(to_record(p), ensure_ascii=False) + "\n")
    return {name: len(prompts) for name, prompts in parts.items()}


def to_record(p: EvalPrompt) -> dict:
    return {"id": p.id, "kind": p.kind, "text": p.text, "spans": [[s.type, s.start, s.end] for s in p.spans]}


def from_record(r: dict) -> EvalPrompt:
    text = r["text"]
    return EvalPrompt(r["id"], r["kind"], text, [GoldSpan(t, a, b, text[a:b]) for t, a, b in r["spans"]])


def source_of(prompt: EvalPrompt) -> str:
    return prompt.id.split("-", 1)[0]


def load(split: str, *, final: bool = False, assets: Path = ASSETS) -> list[EvalPrompt]:
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}")
    if split == "test" and not final:
        raise FrozenSplitError("the test part is frozen: score it only when a change is finished, with --final")
    path = assets / SPLIT_FILES[split].name
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [from_record(json.loads(line)) for line in fh if line.strip()]


def record_test_scoring(summary: dict, assets: Path = ASSETS) -> dict:
    """Append one line to the scoring record: when the test part was looked at, and what it said."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, cwd=Path(__file__).resolve().parent).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    entry = {"scored_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
             "uncommitted_changes": dirty, **summary}
    with open(assets / SCORINGS.name, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
    return entry
