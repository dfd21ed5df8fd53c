"""simulations.studies.comparison.settings: option parsing, `--quick`, and the run configs a comparison builds."""

from __future__ import annotations

import pytest

from simulations.studies.compare_strategies import settings_from_argv
from simulations.studies.comparison.settings import DEFAULT_OUT, DEFAULT_REPORT, Settings, parse_epsilons, parse_per_profile


def test_epsilons_and_per_profile_values():
    assert parse_epsilons("none, 1,4,8") == [None, 1.0, 4.0, 8.0]
    for bad in ("0", "-1", "nan", ""):
        with pytest.raises(Exception):
            parse_epsilons(bad)
    assert parse_per_profile("6", ["hospital", "phone"], {}) == {"hospital": 6, "phone": 6}
    assert parse_per_profile("phone=10", ["hospital", "phone"], {"hospital": 4, "phone": 8}) == {"hospital": 4, "phone": 10}


def test_quick_and_explicit_options():
    settings = settings_from_argv(["--quick", "--epsilons", "8"])
    assert settings.epsilons == [8.0] and settings.rounds == 1 and settings.strategies == ["fedsa"]  # explicit wins over --quick
    assert settings.out != str(DEFAULT_OUT)  # a smoke run never overwrites the recorded study
    assert settings_from_argv(["--data", "somewhere"]).profile_labels() == ["custom"]
    default = settings_from_argv([])
    assert (default.out, default.report) == (str(DEFAULT_OUT), str(DEFAULT_REPORT))
    elsewhere = settings_from_argv(["--out", "somewhere/results"])
    assert elsewhere.report == "somewhere/results/results.md"  # the report goes with its results unless told
    for argv, named in ((["--profiles", "school"], "--profiles"), (["--strategies", "hetlora"], "--strategies"),
                        (["--held-out", "1"], "--held-out"), (["--global-weight", "2"], "--global-weight"),
                        (["--validation-fraction", "1"], "--validation-fraction"), (["--dp-server-learning-rate", "0"], "--dp-server-learning-rate")):
        with pytest.raises(SystemExit, match=named):
            settings_from_argv(argv)


def test_the_server_step_is_given_to_the_dp_rows_only(tmp_path):
    settings = Settings(dp_server_learning_rate=4.0)
    assert settings.run_config("phone", None, "fedavg", str(tmp_path), "o").server_learning_rate == 1.0
    assert settings.run_config("phone", 8.0, "fedavg", str(tmp_path), "o").server_learning_rate == 4.0
    assert settings_from_argv(["--dp-server-learning-rate", "3"]).dp_server_learning_rate == 3.0


def test_run_configs_carry_the_privacy_level(tmp_path):
    settings = Settings()
    private = settings.run_config("hospital", 4.0, "ffa", str(tmp_path), "out")
    assert private.record_dp and private.target_epsilon == 4.0 and private.strategy == "ffa" and private.accountant == "rdp"
    plain = settings.run_config("custom", None, "fedavg", str(tmp_path), "out")
    assert not plain.record_dp and plain.target_epsilon == 0.0 and plain.profile == "hospital"  # your own data: hospital's defaults


def test_every_device_trains_every_round_in_plaintext_whatever_the_profile_defaults(tmp_path):
    for i in range(8):
        (tmp_path / f"phone-{i:02d}.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    config = Settings().run_config("phone", 8.0, "fedavg", str(tmp_path), "o")
    assert config.clients_per_round == 8 and config.min_train_nodes == 8
