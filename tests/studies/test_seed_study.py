"""simulations.studies.seed_study: pooling over seeds, bootstrap intervals, and resuming a study from the
per-seed results it finds (no federation is run here: the per-seed results are written by hand)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from pathlib import Path

import pytest

from simulations.studies import seed_study as ss
from simulations.studies.compare_strategies import settings_from_argv
from simulations.studies.comparison import orchestration
from simulations.studies.comparison.formatting import json_ready
from simulations.studies.comparison.reuse import machine_info, model_info, reused_no_dp_entry
from simulations.studies.comparison.settings import Settings

PASSTHROUGH = ["--profiles", "hospital", "--epsilons", "none,8", "--strategies", "fedavg"]


def _results(perplexities: dict[str, dict[str, tuple[float, float, float]]], settings: dict | None = None) -> dict:
    """A results.json with per-client (global-only, local-only, personalized) per ε label."""
    epsilons = {}
    for label, clients in perplexities.items():
        epsilons[label] = {
            "epsilon": None if label == "none" else float(label),
            "local_only": {c: {"perplexity": l} for c, (_, l, _) in clients.items()},
            "runs": {"fedavg": {"clients": {c: {"global_only": g, "personalized": p} for c, (g, _, p) in clients.items()}}},
        }
    return {"settings": settings or {}, "profiles": {"hospital": {"epsilons": epsilons}}, "wall_time_s": 60.0, **THIS_MACHINE}


THIS_MACHINE = {"machine": machine_info(), "model": model_info("default")}  # what this machine's runs record


# Gains min(g, l) − p per client: seed 0: none 10, 6 → 8; ε=8 4, 2 → 3.  seed 1: none 2, 2 → 2; ε=8 3, 1 → 2.
# seed 2: none 5, 3 → 4; ε=8 −1, 1 → 0.
SEEDS = {
    0: {"none": {"a": (100, 110, 90), "b": (50, 40, 34)}, "8": {"a": (200, 190, 186), "b": (80, 90, 78)}},
    1: {"none": {"a": (30, 31, 28), "b": (30, 29, 27)}, "8": {"a": (60, 70, 57), "b": (50, 51, 49)}},
    2: {"none": {"a": (100, 90, 85), "b": (70, 80, 67)}, "8": {"a": (120, 121, 121), "b": (99, 98, 97)}},
}


def test_pool_is_the_ratio_of_mean_gains_with_per_seed_ratios_and_an_interval():
    study = ss.pool({s: _results(p) for s, p in SEEDS.items()})
    (item,) = study["gain_kept"]
    assert (item["profile"], item["strategy"], item["seeds"]) == ("hospital", "fedavg", 3)
    assert item["gain_non_private"] == pytest.approx((8 + 2 + 4) / 3)
    assert item["gain_private"] == pytest.approx((3 + 2 + 0) / 3)
    assert item["kept"] == pytest.approx(5 / 14)  # not the mean of the per-seed ratios (3/8 + 1 + 0) / 3
    assert {s: v["kept"] for s, v in item["per_seed"].items()} == pytest.approx({0: 3 / 8, 1: 1.0, 2: 0.0})
    def nats(seed: int, label: str) -> float:
        clients = SEEDS[seed][label].values()
        return sum(math.log(min(g, l)) - math.log(p) for g, l, p in clients) / len(clients)

    assert item["kept_nats"] == pytest.approx(sum(nats(s, "8") for s in SEEDS) / sum(nats(s, "none") for s in SEEDS))
    assert item["per_seed"][0]["kept_nats"] == pytest.approx(nats(0, "8") / nats(0, "none"))
    low, high = item["interval"]
    assert 0.0 <= low <= item["kept"] <= high <= 1.0  # resampled ratios lie within the per-seed extremes
    assert not item["goal_met"] and not item["goal_met_at_lower_bound"]
    by_privacy = {w["privacy"]: w for w in study["win_share"]}
    # no DP: seed 0 both win (90 < 100, 110; 34 < 40, 50), seed 1 both, seed 2 both -> 6/6
    assert (by_privacy["none"]["wins"], by_privacy["none"]["clients"]) == (6, 6) and by_privacy["none"]["goal_met"]
    # ε=8: seed 0 2, seed 1 2, seed 2 only b (97 < 98, 99) -> 5/6
    assert (by_privacy["8"]["wins"], by_privacy["8"]["clients"]) == (5, 6)
    assert by_privacy["8"]["per_seed"] == pytest.approx({0: 1.0, 1: 1.0, 2: 0.5})


def test_pooled_gain_kept_is_undefined_without_a_positive_non_private_gain():
    losing = {"none": {"a": (10, 10, 12)}, "8": {"a": (10, 10, 9)}}
    (item,) = ss.pool({0: _results(losing), 1: _results(losing)})["gain_kept"]
    assert item["kept"] is None and item["interval"] is None and not item["goal_met"]


def test_bootstrap_interval_covers_the_statistic_and_is_none_when_mostly_undefined():
    # The mean of 100 units: the percentile interval approximates mean ± 1.96·sd/√n (43.84 – 55.16).
    units = [float(x) for x in range(100)]
    low, high = ss.bootstrap_interval(units, statistics.fmean)
    half_width = 1.96 * statistics.pstdev(units) / 10
    assert low == pytest.approx(49.5 - half_width, abs=1.0) and high == pytest.approx(49.5 + half_width, abs=1.0)
    assert ss.bootstrap_interval([1.0, -1.0], lambda xs: None if min(xs) < 0 else 1.0) is None  # 75 % of resamples undefined


def test_parse_seeds():
    assert ss.parse_seeds("0-3") == [0, 1, 2, 3]
    assert ss.parse_seeds("4, 0-1") == [4, 0, 1]
    for bad in ("x", "3-1", "1,1", "5"):
        with pytest.raises(SystemExit):
            ss.parse_seeds(bad)


def _settings_for(seed: int, out) -> dict:
    argv = [*PASSTHROUGH, "--seed", str(seed), "--out", str(out / f"seed-{seed}"), "--runs-dir", "ignored"]
    return json.loads(json.dumps(json_ready(dataclasses.asdict(settings_from_argv(argv)))))


def test_a_study_resumes_from_finished_seeds_and_writes_its_report(tmp_path):
    out = tmp_path / "study"
    for seed, perplexities in SEEDS.items():
        (out / f"seed-{seed}").mkdir(parents=True)
        (out / f"seed-{seed}" / "results.json").write_text(json.dumps(_results(perplexities, _settings_for(seed, out))))
    assert ss.main(["--seeds", "0-2", "--out", str(out), *PASSTHROUGH]) == 0  # every seed reused: no federation runs
    study = json.loads((out / "seeds.json").read_text())
    assert study["reused"] == [0, 1, 2] and study["gain_kept"][0]["kept"] == pytest.approx(5 / 14)
    report = (out / "results-seeds.md").read_text()
    assert "seed_study --seeds 0-2" in report and "36%" in report  # 5/14
    assert (out / "seeds.png").stat().st_size > 5_000
    # Links are relative to the report's own folder, wherever it is written: the pooled results, the
    # figure, and each seed's own report (seed 0's also for the definitions).
    linked = {*(out / n for n in ("seeds.json", "seeds.png")), *(out / f"seed-{s}" / "results.md" for s in SEEDS)}
    elsewhere = tmp_path / "docs" / "studies" / "seeds.md"
    assert ss.main(["--seeds", "0-2", "--out", str(out), "--report", str(elsewhere), *PASSTHROUGH]) == 0
    for path in (out / "results-seeds.md", elsewhere):
        links = re.findall(r"\]\(([^)]+)\)", path.read_text())
        assert all(not Path(link).is_absolute() for link in links)
        assert {(path.parent / link).resolve() for link in links} == {p.resolve() for p in linked}


def test_a_study_refuses_per_seed_results_made_with_other_settings(tmp_path):
    out = tmp_path / "study"
    settings = _settings_for(0, out)
    settings["learning_rate"] = 0.5
    (out / "seed-0").mkdir(parents=True)
    (out / "seed-0" / "results.json").write_text(json.dumps(_results(SEEDS[0], settings)))
    with pytest.raises(SystemExit, match=r"learning_rate differ: learning_rate 0.5 there, 0.02 here"):
        ss.main(["--seeds", "0-1", "--out", str(out), *PASSTHROUGH])
    assert not (out / "seeds.json").exists()


def test_a_study_made_with_the_uncapped_dp_step_is_refused_with_the_option_that_remakes_it(tmp_path, monkeypatch):
    out = tmp_path / "study"
    settings = _settings_for(0, out)
    settings["dp_step_size"] = "inverse-sigma"  # the default before `capped`
    (out / "seed-0").mkdir(parents=True)
    (out / "seed-0" / "results.json").write_text(json.dumps(_results(SEEDS[0], settings)))
    with pytest.raises(SystemExit, match=r'dp_step_size "inverse-sigma" there, "capped" here'):
        ss.main(["--seeds", "0-1", "--out", str(out), *PASSTHROUGH])
    ran = []

    def fake_run(run_settings, command):
        ran.append(run_settings.seed)
        return _results(SEEDS[run_settings.seed], json.loads(json.dumps(json_ready(dataclasses.asdict(run_settings)))))

    monkeypatch.setattr(orchestration, "run", fake_run)
    assert ss.main(["--seeds", "0-1", "--out", str(out), *PASSTHROUGH, "--dp-step-size", "inverse-sigma"]) == 0
    assert ran == [1]  # with the option named, seed 0 is reused as it is


def test_a_study_names_a_setting_the_per_seed_results_do_not_record(tmp_path):
    out = tmp_path / "study"
    settings = _settings_for(0, out)
    del settings["global_weight"]  # None now: a missing key must still be named, not pass as equal
    (out / "seed-0").mkdir(parents=True)
    (out / "seed-0" / "results.json").write_text(json.dumps(_results(SEEDS[0], settings)))
    with pytest.raises(SystemExit, match=r"\(global_weight differ: global_weight not recorded there, null here\)"):
        ss.main(["--seeds", "0-1", "--out", str(out), *PASSTHROUGH])


def test_a_study_refuses_a_single_seed_option(tmp_path):
    with pytest.raises(SystemExit, match="--seed"):
        ss.main(["--seeds", "0-1", "--seed", "3", "--out", str(tmp_path)])


def test_a_study_refuses_a_seed_folder_holding_another_seed(tmp_path):
    out = tmp_path / "study"
    (out / "seed-0").mkdir(parents=True)
    (out / "seed-0" / "results.json").write_text(json.dumps(_results(SEEDS[0], _settings_for(1, out))))  # seed 1's results in seed-0/
    with pytest.raises(SystemExit, match="holds seed 1, not 0"):
        ss.main(["--seeds", "0-1", "--out", str(out), *PASSTHROUGH])


# ---- reusing the no-DP rows of an earlier comparison (--no-dp-from) -----------------------------

CLIENTS = {"a": {"train_records": 80, "held_out_records": 80, "base_perplexity": 700.0},
           "b": {"train_records": 80, "held_out_records": 80, "base_perplexity": 650.0}}


def _settings(argv: list[str]) -> Settings:
    return settings_from_argv(argv)


def _earlier(tmp_path, settings: Settings, **setting_changes):
    results = _results(SEEDS[0], {**json.loads(json.dumps(json_ready(dataclasses.asdict(settings)))), **setting_changes})
    results["settings"].pop("dp_step_size")  # made before the setting existed
    results["profiles"]["hospital"]["clients"] = CLIENTS
    path = tmp_path / f"earlier-{len(list(tmp_path.glob('earlier-*')))}.json"
    path.write_text(json.dumps(results))
    return path


def test_no_dp_rows_are_reused_only_when_nothing_a_no_dp_run_depends_on_differs(tmp_path):
    now = _settings([*PASSTHROUGH, "--epsilons", "none,1,8"])
    earlier = _earlier(tmp_path, now, epsilons=[None, 8.0], delta=1e-6, max_grad_norm=1.0, accountant="prv", out="elsewhere")
    entry = reused_no_dp_entry(earlier, "hospital", now, CLIENTS)
    assert entry["local_only"] == {"a": {"perplexity": 110}, "b": {"perplexity": 40}}
    assert entry["runs"]["fedavg"]["clients"]["a"]["personalized"] == 90 and entry["reused_from"] == str(earlier)
    for change, named in ((dict(learning_rate=0.5), "learning_rate 0.5 there, 0.02 here"), (dict(validation_fraction=0.0), "validation_fraction"),
                          (dict(seed=1), "seed")):
        with pytest.raises(SystemExit, match=named):
            reused_no_dp_entry(_earlier(tmp_path, now, **change), "hospital", now, CLIENTS)
    other_split = {**CLIENTS, "b": {**CLIENTS["b"], "base_perplexity": 651.0}}
    with pytest.raises(SystemExit, match="clients or their splits differ"):
        reused_no_dp_entry(earlier, "hospital", now, other_split)
    with pytest.raises(SystemExit, match="hospital / ffa"):
        reused_no_dp_entry(earlier, "hospital", _settings([*PASSTHROUGH, "--strategies", "fedavg,ffa"]), CLIENTS)


def test_a_study_hands_each_seed_its_own_earlier_results_for_the_no_dp_rows(tmp_path, monkeypatch):
    seen = {}

    def fake_run(settings, command):
        seen[settings.seed] = (settings.no_dp_from, command)
        return _results(SEEDS[settings.seed], json.loads(json.dumps(json_ready(dataclasses.asdict(settings)))))

    monkeypatch.setattr(orchestration, "run", fake_run)
    earlier = tmp_path / "earlier-study"
    assert ss.main(["--seeds", "0-1", "--out", str(tmp_path / "study"), "--no-dp-from", str(earlier), *PASSTHROUGH]) == 0
    assert {s: v[0] for s, v in seen.items()} == {s: str(earlier / f"seed-{s}" / "results.json") for s in (0, 1)}
    assert all("--no-dp-from" in command for _, command in seen.values())
    study = json.loads((tmp_path / "study" / "seeds.json").read_text())
    assert study["no_dp_from"] == str(earlier) and "no_dp_from" not in study["settings"]
    assert "come unchanged from" in (tmp_path / "study" / "results-seeds.md").read_text()
    # A finished seed made with another --no-dp-from is still reused: where its no-DP rows came from is per seed.
    assert ss.main(["--seeds", "0-1", "--out", str(tmp_path / "study"), *PASSTHROUGH]) == 0


def _other_transformers(results: dict) -> dict:
    machine = {**results["machine"], "versions": {**results["machine"]["versions"], "transformers": "0.0.1"}}
    return {**results, "machine": machine}


def test_results_made_on_another_machine_are_never_reused(tmp_path):
    here = machine_info()["versions"]["transformers"]
    # a finished seed of this study
    out = tmp_path / "study"
    (out / "seed-0").mkdir(parents=True)
    (out / "seed-0" / "results.json").write_text(json.dumps(_other_transformers(_results(SEEDS[0], _settings_for(0, out)))))
    with pytest.raises(SystemExit, match=rf"another machine \(transformers 0.0.1 there, {here} here\)"):
        ss.main(["--seeds", "0-1", "--out", str(out), *PASSTHROUGH])
    # the no-DP rows of an earlier comparison, and a base model that is not this one
    now = _settings([*PASSTHROUGH, "--epsilons", "none,1,8"])
    earlier = _earlier(tmp_path, now)
    results = json.loads(earlier.read_text())
    earlier.write_text(json.dumps(_other_transformers(results)))
    with pytest.raises(SystemExit, match=rf"another machine \(transformers 0.0.1 there, {here} here\); rerun the no-DP rows"):
        reused_no_dp_entry(earlier, "hospital", now, CLIENTS)
    earlier.write_text(json.dumps({**results, "model": {**results["model"], "sha256": "0" * 64}}))
    with pytest.raises(SystemExit, match=r"model sha256 0{64} there"):
        reused_no_dp_entry(earlier, "hospital", now, CLIENTS)
    earlier.write_text(json.dumps(results))
    assert reused_no_dp_entry(earlier, "hospital", now, CLIENTS)["reused_from"] == str(earlier)
