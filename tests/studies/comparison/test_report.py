"""simulations.studies.comparison.report (and plots): the Markdown report's links resolve from the
report's own folder wherever it is written, its analysis section survives regeneration, and the
selection table says what each device chose."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from simulations.studies.comparison.formatting import json_ready
from simulations.studies.comparison.orchestration import finalize
from simulations.studies.comparison.plots import plot_all
from simulations.studies.comparison.report import ANALYSIS_END, ANALYSIS_START, selection_rows, write_report
from simulations.studies.comparison.settings import Settings

CLIENTS = ("hospital-00-cardiology", "hospital-01-oncology")


def _run(personalized: tuple[float, float], epsilon: float | None) -> dict:
    return {
        "upload_bytes": {"per_round_total": [2000], "mean_total_per_round": 2000.0, "mean_per_client_per_round": 1000.0, "adapter_bytes": 4000},
        "clients": {c: {"global_only": 20.0, "federated_with_private_part": 20.0, "finetuned": p + 1, "personalized": p,
                        "epsilon_after_finetune": epsilon, "finetune_epochs": 3, "global_weight": 0.25, "selected_on_validation": epsilon is None,
                        "private_model": "finetuned"} for c, p in zip(CLIENTS, personalized)},
    }


def _results() -> dict:
    """A finished comparison of one profile, no DP and ε = 8, one strategy, two clients (made up)."""
    settings = Settings(profiles=["hospital"], epsilons=[None, 8.0], strategies=["fedavg"])
    return {
        "command": "python -m simulations.studies.compare_strategies --profiles hospital --epsilons none,8 --strategies fedavg",
        "settings": json_ready(dataclasses.asdict(settings)),
        "machine": {"processor": "test cpu", "cpus": 2, "memory_gib": 24, "platform": "Linux", "versions": {"torch": "2"}},
        "model": {"sha256": "0" * 64}, "started": "start", "finished": "end", "wall_time_s": 120.0,
        "timing": {"federation_s": 60.0, "in_process_s": 60.0},
        "profiles": {"hospital": {
            "clients": {c: {"train_records": 80, "held_out_records": 80, "base_perplexity": 700.0} for c in CLIENTS},
            "epsilons": {
                "none": {"epsilon": None, "local_only": {c: {"perplexity": 15.0, "epochs": 9} for c in CLIENTS},
                         "runs": {"fedavg": _run((10.0, 12.0), None)}},
                "8": {"epsilon": 8.0, "local_only": {c: {"perplexity": 30.0, "epochs": 15} for c in CLIENTS},
                      "runs": {"fedavg": _run((18.0, 25.0), 7.9)}},
            },
        }},
    }


def _links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", markdown)


@pytest.mark.parametrize("report_at", ["docs/studies/comparison.md", "elsewhere/deeper/report.md"])
def test_every_link_of_the_report_resolves_from_the_reports_own_folder(tmp_path, report_at):
    out = tmp_path / "docs" / "studies" / "comparison"
    out.mkdir(parents=True)
    results = finalize(_results())
    plots = plot_all(results, out)
    (out / "results.json").write_text("{}")
    report = write_report(results, tmp_path / report_at, out, plots)
    links = _links(report.read_text())
    assert len(links) == 1 + len(plots)  # results.json and every plot
    for link in links:
        assert not Path(link).is_absolute() and (report.parent / link).is_file(), link


def test_the_report_states_the_goals_and_keeps_its_analysis_when_regenerated(tmp_path):
    results = finalize(_results())
    report = write_report(results, tmp_path / "report.md", tmp_path, [])
    text = report.read_text()
    # no DP: 10 and 12 beat both 20 (global) and 15 (local); ε = 8: 18 beats both, 25 does not
    assert "- **fedavg: win-share goal missed in 1 of 2 configurations**: hospital ε=8 (50%); met in hospital no DP (100%)." in text
    # gain: no DP mean(15 − 10, 15 − 12) = 4; ε = 8 mean(20 − 18, 20 − 25) = −1.5; kept −1.5 / 4
    assert "**hospital / fedavg: gain kept at ε=8 = -38% — goal missed** (-1.50 vs +4.00 perplexity points without DP)." in text
    assert "## Analysis\n\n_(not written yet)_" in text
    assert "### Held-out bits per byte" not in text  # the made-up clients have no byte counts
    written = text.replace("## Analysis\n\n_(not written yet)_", "## Analysis\n\nWhat the numbers mean.")
    report.write_text(written)
    write_report(results, report, tmp_path, [])
    again = report.read_text()
    assert again.count(ANALYSIS_START) == again.count(ANALYSIS_END) == 1
    assert "What the numbers mean." in again and "_(not written yet)_" not in again


def test_selection_rows_report_what_each_device_chose_without_dp():
    def client(epochs: int, weight: float, chosen: bool = True, private: str = "finetuned") -> dict:
        return {"finetune_epochs": epochs, "global_weight": weight, "selected_on_validation": chosen, "private_model": private}

    results = {"profiles": {"phone": {"epsilons": {
        "none": {"local_only": {"a": {"epochs": 9}, "b": {"epochs": 13}},
                 "runs": {"fedavg": {"clients": {"a": client(4, 0.1), "b": client(12, 0.25, private="from_scratch")}},
                          "ffa": {"clients": {"a": client(5, 0.5, chosen=False), "b": client(5, 0.5, chosen=False)}}}},
        "8": {"local_only": {"a": {"epochs": 15}}, "runs": {"fedavg": {"clients": {"a": client(5, 0.5, chosen=False)}}}},
    }}}}
    # ffa ran the fixed protocol (e.g. --validation-fraction 0) and DP runs never select: neither is listed.
    assert selection_rows(results) == [["phone", "fedavg", "11.00 (min 9, max 13)", "8.00 (min 4, max 12)", "0.17 (min 0.1, max 0.25)", "1/2"]]


def test_the_report_gives_held_out_bits_per_byte_when_the_byte_counts_are_recorded(tmp_path):
    results = _results()
    for client in results["profiles"]["hospital"]["clients"].values():
        client.update(held_out_tokens=100, held_out_bytes=400)
    text = write_report(finalize(results), tmp_path / "report.md", tmp_path, []).read_text()
    table = text.split("### Held-out bits per byte", 1)[1]
    # no DP: base log2(700)/4, global-only log2(20)/4, local-only log2(15)/4, personalized mean(log2 10, log2 12)/4
    assert "| hospital | no DP | fedavg | 2.363 | 1.080 | 0.977 | 0.863 | +0.113 |" in table
