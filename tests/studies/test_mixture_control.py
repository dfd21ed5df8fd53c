"""simulations.studies.mixture_control: the no-federation control (local-only mixed with the base model)
reproduces the comparison's local-only model and refuses a study it cannot reproduce."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from simulations.studies.baselines import train_local_only
from client.selection import WEIGHT_GRID
from fedpriv.modeling import load_tokenizer
from simulations.studies import compare_strategies as cs
from simulations.studies import mixture_control as mc

ARGV = ["--profiles", "hospital", "--num-clients", "1", "--records-per-client", "24", "--epsilons", "none",
        "--strategies", "fedavg", "--rounds", "1", "--local-epochs", "1", "--finetune-epochs", "1", "--max-seq-len", "24"]


@pytest.fixture()
def worker(models, monkeypatch):
    monkeypatch.setitem(cs._WORKER, "models", models)
    monkeypatch.setitem(cs._WORKER, "tokenizer", load_tokenizer("default"))


def _settings() -> cs.Settings:
    return cs.settings_from_args(cs.build_parser().parse_args(ARGV), ARGV)


def test_the_control_mixes_the_comparisons_own_local_only_model_with_the_base_model(models, worker, tmp_path):
    settings = _settings()
    (client,) = cs.load_clients(cs.prepare_data("hospital", settings, tmp_path), settings)
    config = settings.run_config("hospital", None, "fedavg", str(tmp_path / "hospital" / "data"), "")
    control = mc._task(config, client)
    local, _, _ = train_local_only(models, config, client.client_id, cs._encode(client.train, config), cs._encode(client.held_out, config))
    assert control.local_only == local.perplexity  # the same model the comparison's local-only row measures
    assert control.global_weight in WEIGHT_GRID and math.isfinite(control.control) and math.isfinite(control.untrained_global)
    if control.global_weight == 0:
        assert control.control == pytest.approx(control.local_only)
    else:
        assert control.control != pytest.approx(control.local_only, rel=1e-9)


class _InProcess:
    map = staticmethod(map)


def _study_file(tmp_path, local_only_perplexity: float):
    settings = _settings()
    results = {
        "settings": cs._json_ready(dataclasses.asdict(settings)), "machine": cs.machine_info(), "model": cs.model_info("default"),
        "profiles": {"hospital": {"epsilons": {"none": {
            "local_only": {"hospital-00-cardiology": {"perplexity": local_only_perplexity}},
            "runs": {"fedavg": {"clients": {"hospital-00-cardiology": {"global_only": 1e9, "personalized": 1.0}}}},
        }}}},
    }
    path = tmp_path / "seed-0" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results))
    return path


def test_a_study_whose_local_only_model_is_not_reproduced_is_refused(worker, tmp_path):
    path = _study_file(tmp_path, 123.0)
    with pytest.raises(SystemExit, match=r"hospital-00-cardiology's local-only model gives [\d.]+ here, 123.000 in the study: not reproduced"):
        mc.controls_for(path, _InProcess())


def test_rows_and_summary_of_a_reproduced_study(worker, tmp_path):
    settings = _settings()
    (client,) = cs.load_clients(cs.prepare_data("hospital", settings, tmp_path / "data"), settings)
    config = settings.run_config("hospital", None, "fedavg", str(tmp_path / "data" / "hospital" / "data"), "")
    local = mc._task(config, client).local_only
    rows = mc.controls_for(_study_file(tmp_path, local), _InProcess())
    (row,) = rows
    assert row["local_only"] == row["local_only_no_dp"] == local and row["personalized"] == 1.0
    (summary,) = mc.summarize(rows)
    assert summary["gain_personalized"] == pytest.approx(local - 1.0)
    assert summary["gain_control"] == pytest.approx(local - row["control"])
    assert summary["gain_untrained_global"] == pytest.approx(local - row["untrained_global"])
    assert summary["personalized_beats_both"] == 1 and summary["personalized_beats_control"] == 1
    assert summary["personalized_beats_untrained_global"] == 1
    assert "| hospital | no DP | fedavg | 1 |" in mc.report([summary], "cmd")
    assert mc.results_files(tmp_path) == [tmp_path / "seed-0" / "results.json"]
    with pytest.raises(SystemExit, match="neither a results.json nor a seed study folder"):
        mc.results_files(tmp_path / "data")
