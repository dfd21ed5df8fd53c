"""`python -m simulations.studies.sanitizer_eval`: the sanitizer's evaluation (generated set, stored split)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from simulations.studies.sanitizer_eval import dataset
from simulations.studies.sanitizer_eval.__main__ import main
from simulations.studies.sanitizer_eval.sources import SOURCES, generate_source

# A few of presidio-evaluator's templates (one per slot kind) and names rows, so the presidio
# source is tested without the wheel, which is needed only to rebuild the stored split.
PRESIDIO_RAW = Path(__file__).parent / "fixtures" / "presidio_raw"


def test_generated_split_against_presidio_default(tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["--split", "generated", "--n", "40", "--seed", "3", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "PERSON" in printed and "Presidio" in printed and "utility" in printed
    data = json.loads(report.read_text(encoding="utf-8"))
    ours, presidio = data["systems"]
    assert ours["name"] == "fedpriv gateway" and presidio["name"] == "Presidio default"
    assert ours["direct_leak_rate"] <= 0.01 < presidio["direct_leak_rate"]
    assert ours["per_type"]["PERSON"]["count"] > 0


def test_every_source_labels_its_spans_exactly():
    for source in SOURCES:
        prompts = generate_source(source, 12, seed=5, presidio_raw=PRESIDIO_RAW)
        assert len(prompts) == 12 and all(p.id.startswith(source) for p in prompts)
        for p in prompts:
            assert all(p.text[s.start : s.end] == s.text for s in p.spans), (source, p.text)
        assert sum(len(p.spans) for p in prompts) > 12


def test_test_part_is_frozen(tmp_path, capsys, monkeypatch):
    assert main(["--split", "test"]) == 2
    assert "frozen" in capsys.readouterr().err
    with pytest.raises(dataset.FrozenSplitError):
        dataset.load("test")
    with pytest.raises(dataset.FrozenSplitError, match="made once"):
        dataset.build(per_source=2)  # the stored split is never rebuilt
    # the stored halves are disjoint and hold every source
    dev = {p.id: p.text for p in dataset.load("dev")}
    test = {p.id: p.text for p in dataset.load("test", final=True)}
    assert not set(dev) & set(test) and not set(dev.values()) & set(test.values())
    assert {dataset.source_of(p) for p in dataset.load("dev")} == set(SOURCES)
    # a scoring of the test part is recorded
    monkeypatch.setattr(dataset, "SCORINGS", tmp_path / "scorings.jsonl")
    entry = dataset.record_test_scoring({"direct_leak_rate": 0.5}, assets=tmp_path)
    assert entry["commit"] and json.loads((tmp_path / "scorings.jsonl").read_text())["direct_leak_rate"] == 0.5


def test_build_splits_once(tmp_path):
    sizes = dataset.build(per_source=4, seed=1, assets=tmp_path, presidio_raw=PRESIDIO_RAW)
    assert sizes == {"dev": 2 * len(SOURCES), "test": 2 * len(SOURCES)}
    with gzip.open(tmp_path / "eval_dev.jsonl.gz", "rt", encoding="utf-8") as fh:
        first = dataset.from_record(json.loads(fh.readline()))
    assert all(first.text[s.start : s.end] == s.text for s in first.spans)
    with pytest.raises(dataset.FrozenSplitError):
        dataset.build(per_source=4, seed=1, assets=tmp_path, presidio_raw=PRESIDIO_RAW)


def test_dev_scoring_reports_per_source_and_calibration(tmp_path, monkeypatch):
    from simulations.studies.sanitizer_eval import scoring

    small = dataset.load("dev")[::25]
    monkeypatch.setattr(dataset, "load", lambda split, final=False, assets=None: small)
    report = scoring.run_split("dev", systems=("rules",))
    ours = report["systems"][0]
    assert set(ours["per_source"]) == set(SOURCES)
    assert ours["calibration"]["sent"]["prompts"] + ours["calibration"]["refused"]["prompts"] == len(small)
    assert ours["wire"]["direct_leak_rate"] <= ours["direct_leak_rate"]
