"""simulations.studies.mixture_control: the no-federation control (local-only mixed with the base model)
reproduces the comparison's local-only model and refuses a study it cannot reproduce."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from client.selection import WEIGHT_GRID
from fedpriv.modeling import load_tokenizer
from simulations.studies import mixture_control as mc
from simulations.studies.baselines import train_local_only
from simulations.studies.compare_strategies import settings_from_argv
from simulations.studies.comparison import workers
from simulations.studies.comparison.formatting import json_ready
from simulations.studies.comparison.orchestration import load_clients, prepare_data
from simulations.studies.comparison.reuse import machine_info, model_info
from simulations.studies.comparison.settings import Settings

ARGV = ["--profiles", "hospital", "--num-clients", "1", "--records-per-client", "24", "--epsilons", "none",
        "--strategies", "fedavg", "--rounds", "1", "--local-epochs", "1", "--finetune-epochs", "1", "--max-seq-len", "24"]


@pytest.fixture()
def worker(models):
    """This process as a pool worker: the tasks read its device side (`workers.current`)."""
    previous = workers.install(workers.DeviceSide(models, load_tokenizer("default")))
    yield workers.current()
    workers.install(previous)


def _settings() -> Settings:
    return settings_from_argv(ARGV)


def test_the_control_mixes_the_comparisons_own_local_only_model_with_the_base_model(models, worker, tmp_path):
    settings = _settings()
    (client,) = load_clients(prepare_data("hospital", settings, tmp_path), settings)
    config = settings.run_config("hospital", None, "fedavg", str(tmp_path / "hospital" / "data"), "")
    control = mc.control_task(config, client)
    local, _, _ = train_local_only(models, config, client.client_id, worker.encode(client.train, config), worker.encode(client.held_out, config))
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
        "settings": json_ready(dataclasses.asdict(settings)), "machine": machine_info(), "model": model_info("default"),
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
    (client,) = load_clients(prepare_data("hospital", settings, tmp_path / "data"), settings)
    config = settings.run_config("hospital", None, "fedavg", str(tmp_path / "data" / "hospital" / "data"), "")
    local = mc.control_task(config, client).local_only
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
