"""simulations.studies.compare_strategies and client.personalize: the in-process pieces (no Ray), plus one
slow end-to-end `--quick`-sized run on Flower's simulation engine."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from client.device import DeviceFolder
from client.dp_training import encode, noise_multiplier_for, sample_rate_for, train_locally
from client.personalize import LEDGER_FILE, personalize, total_local_epochs
from client.privacy_ledger import PrivacyLedger
from fedpriv.adapter_parts import lora_role, split_adapter
from fedpriv.config import RunConfig
from fedpriv.data import split_records
from fedpriv.errors import PrivacyBudgetExhausted
from fedpriv.modeling import adapter_state, load_tokenizer
from simulations.studies import compare_strategies as cs
from simulations.studies.baselines import evaluate_adapter, train_local_only
from simulations.synthetic import generate_federation

MODEL = "default"


def _config(**overrides) -> RunConfig:
    values = dict(
        model=MODEL, rounds=1, local_epochs=1, finetune_epochs=1, batch_size=8, max_seq_len=24, learning_rate=1e-2,
        dp="record", target_epsilon=2.0, accountant="rdp", seed=0,
    )
    values.update(overrides)
    return RunConfig(**values).validated()


@pytest.fixture(autouse=True)
def _fast_calibration():
    # σ calibration is a pure function of its inputs (checked below); compute it once per input.
    with cs.memoized_noise_calibration():
        yield


@pytest.fixture(scope="module")
def client_data():
    texts = generate_federation("hospital", 1, 30, seed=0)
    client_id, records = next(iter(texts.items()))
    split = split_records(client_id, records, 0.2, 0)
    tokenizer = load_tokenizer(MODEL)
    return client_id, encode(tokenizer, split.train, 24), encode(tokenizer, split.held_out, 24)


# ---- local-only under a target ε ----------------------------------------------------------------


def test_local_only_spends_at_most_the_target_epsilon(models, client_data):
    client_id, train, held_out = client_data
    config = _config()
    result, ledger, outcome = train_local_only(models, config, client_id, train, held_out)
    n = len(train)
    # Same σ as a federated client of this config, same number of steps: rounds*local_epochs + finetune_epochs epochs.
    assert outcome.noise_multiplier == pytest.approx(noise_multiplier_for(config, n))
    assert ledger.steps == total_local_epochs(config) * math.ceil(n / config.batch_size) == result.steps
    assert all(q == pytest.approx(sample_rate_for(n, config.batch_size)) for _, q, _ in ledger.history)
    assert result.epsilon <= config.target_epsilon + 1e-9
    assert result.epsilon > 0.9 * config.target_epsilon  # calibrated to spend (nearly) all of it, not a loose bound
    assert math.isfinite(result.perplexity)
    # The budget is spent: one more epoch on this ledger is refused.
    with pytest.raises(PrivacyBudgetExhausted):
        train_locally(models.lora_model(config), train, config, ledger, seed=1, epochs=1)


def test_local_only_without_dp_has_no_ledger(models, client_data):
    client_id, train, held_out = client_data
    result, ledger, outcome = train_local_only(models, _config(dp="none", target_epsilon=0.0, validation_fraction=0.0), client_id, train, held_out)
    assert ledger is None and result.epsilon is None and outcome.noise_multiplier == 0.0


def test_memoized_calibration_gives_the_same_sigma_and_restores():
    from client import dp_training

    config = _config()
    patched_by_fixture = dp_training.noise_multiplier_for
    original = dp_training.noise_multiplier_for.__wrapped_original__
    expected = original(config, 24)
    with cs.memoized_noise_calibration():
        assert dp_training.noise_multiplier_for is not original
        assert dp_training.noise_multiplier_for(config, 24) == expected
        assert dp_training.noise_multiplier_for(_config(target_epsilon=4.0), 24) < expected
    assert dp_training.noise_multiplier_for is patched_by_fixture


# ---- personalized = federated + private part + fine-tuning, inside the same ε --------------------


def _fake_fedsa_device(models, config, client_id, train, tmp_path):
    """What a fedsa federation leaves behind: a global adapter with lora_A only, the device's own
    non-zero lora_B, and a ledger holding `rounds` epochs of DP-SGD."""
    model = models.lora_model(config)
    ledger = PrivacyLedger(accountant=config.accountant)
    for r in range(config.rounds):
        train_locally(model, train, config, ledger, seed=r, epochs=config.local_epochs)
    shared, private = split_adapter(adapter_state(model), "fedsa")
    assert private and all(lora_role(k) == "B" for k in private) and any(v.abs().sum() > 0 for v in private.values())
    device_dir = tmp_path / "devices" / client_id
    device_dir.mkdir(parents=True)
    DeviceFolder(device_dir).save_private(private)  # sealed with the device key, as the ClientApp keeps it
    DeviceFolder(device_dir).save_ledger(ledger)
    return shared, private, ledger, device_dir


def test_personalized_uses_the_private_part_and_finetuning(models, client_data, tmp_path):
    client_id, train, held_out = client_data
    config = _config()
    shared, private, ledger, device_dir = _fake_fedsa_device(models, config, client_id, train, tmp_path)
    global_only = evaluate_adapter(models, config, shared, held_out)
    base = evaluate_adapter(models, config, {}, held_out)
    assert global_only.perplexity == pytest.approx(base.perplexity)  # fedsa's global alone: B = 0, the base model
    with_private = evaluate_adapter(models, config, {**shared, **private}, held_out)

    steps_before = ledger.steps
    result = personalize(models, config, "fedsa", client_id, shared, device_dir, train, held_out)
    before, after = result.federated, result.finetuned
    # Before fine-tuning it is exactly global A + the device's own B ...
    assert before.perplexity == pytest.approx(with_private.perplexity, rel=1e-6)
    assert before.perplexity != pytest.approx(global_only.perplexity, rel=1e-3)
    assert before.epsilon == pytest.approx(ledger.epsilon(config.delta))
    # ... then fine-tuning changed the model and was paid from the same (continued) ledger.
    assert after.perplexity != pytest.approx(before.perplexity, rel=1e-6)
    finetune_steps = config.finetune_epochs * math.ceil(len(train) / config.batch_size)
    assert after.steps == steps_before + finetune_steps
    assert before.epsilon < after.epsilon <= config.target_epsilon + 1e-9
    saved = PrivacyLedger.load(device_dir / LEDGER_FILE, config.accountant)
    assert saved.steps == after.steps  # the device's ledger continues
    # The interpolation mixes the two models' predictions: no extra steps or ε, and (Jensen) a loss
    # below the λ-weighted average of the two losses, since fine-tuning changed the predictions.
    mixed, weight = result.interpolated, result.global_weight
    assert (mixed.epsilon, mixed.steps) == (after.epsilon, after.steps)
    assert mixed.loss < weight * before.loss + (1 - weight) * after.loss

    # The budget is now spent: personalizing again is refused, never silently over budget.
    with pytest.raises(PrivacyBudgetExhausted):
        personalize(models, config, "fedsa", client_id, shared, device_dir, train, held_out)


def test_personalize_refuses_without_ledger_or_private_part(models, client_data, tmp_path):
    client_id, train, held_out = client_data
    config = _config(finetune_epochs=0)
    with pytest.raises(FileNotFoundError):
        personalize(models, config, "fedsa", client_id, {}, tmp_path / "nothing", train, held_out)
    with pytest.raises(FileNotFoundError):  # DP run without a ledger: unknown budget
        personalize(models, config, "ffa", client_id, {}, tmp_path / "nothing", train, held_out)
    result = personalize(models, _config(dp="none", target_epsilon=0.0, finetune_epochs=0), "ffa", client_id, {}, tmp_path, train, held_out)
    assert result.federated == result.finetuned == result.interpolated and result.federated.epsilon is None


# ---- the goal computation on a small synthetic table ---------------------------------------------


def _rows():
    R = cs.ClientRow
    return [
        # no DP: personalized beats both on 4 of 5 clients
        R("hospital", None, "fedsa", "a", 10.0, 12.0, 8.0),  # gain 2
        R("hospital", None, "fedsa", "b", 20.0, 15.0, 11.0),  # gain 4
        R("hospital", None, "fedsa", "c", 5.0, 6.0, 4.0),  # gain 1
        R("hospital", None, "fedsa", "d", 9.0, 9.5, 8.0),  # gain 1
        R("hospital", None, "fedsa", "e", 7.0, 8.0, 9.0),  # loses to global: gain -2
        # ε = 8: 2 of 5 win
        R("hospital", 8.0, "fedsa", "a", 12.0, 14.0, 10.0),  # gain 2
        R("hospital", 8.0, "fedsa", "b", 22.0, 18.0, 19.0),  # loses to local: -1
        R("hospital", 8.0, "fedsa", "c", 6.0, 7.0, 5.5),  # +0.5
        R("hospital", 8.0, "fedsa", "d", 10.0, 9.0, 9.0),  # tie with local is not a win: 0
        R("hospital", 8.0, "fedsa", "e", 8.0, 9.0, 8.5),  # -0.5
        # another strategy whose non-private gain is negative
        R("hospital", None, "ffa", "a", 10.0, 12.0, 11.0),
        R("hospital", 8.0, "ffa", "a", 12.0, 14.0, 11.0),
    ]


def test_goal_computation_on_a_synthetic_table():
    summary = cs.summarize(_rows())
    nodp = summary[("hospital", "none", "fedsa")]
    assert nodp["clients"] == 5 and nodp["wins"] == 4
    assert nodp["win_share"] == pytest.approx(0.8) and nodp["win_goal_met"]  # exactly 80 % meets "≥ 80 %"
    assert nodp["gain"] == pytest.approx((2 + 4 + 1 + 1 - 2) / 5)
    assert nodp["beats_global"] == pytest.approx(0.8) and nodp["beats_local"] == pytest.approx(0.8)
    assert nodp["mean_personalized"] == pytest.approx(8.0)
    private = summary[("hospital", "8", "fedsa")]
    assert private["wins"] == 2 and private["win_share"] == pytest.approx(0.4) and not private["win_goal_met"]
    assert private["gain"] == pytest.approx((2 - 1 + 0.5 + 0 - 0.5) / 5)
    assert private["gain_nats"] == pytest.approx(
        sum(math.log(min(g, l)) - math.log(p) for g, l, p in [(12, 14, 10), (22, 18, 19), (6, 7, 5.5), (10, 9, 9), (8, 9, 8.5)]) / 5
    )

    kept = cs.gain_kept(summary)
    fedsa = kept[("hospital", "fedsa")]
    assert fedsa["kept"] == pytest.approx(0.2 / 1.2) and not fedsa["goal_met"]
    ffa = kept[("hospital", "ffa")]
    assert ffa["gain_non_private"] == pytest.approx(-1.0) and ffa["kept"] is None and not ffa["goal_met"]
    assert ("hospital", "fedsa") in kept and len(kept) == 2


def test_gain_kept_goal_met_and_missing_configurations():
    R = cs.ClientRow
    rows = [R("phone", None, "ffa", "a", 10, 10, 5), R("phone", 8.0, "ffa", "a", 10, 10, 6), R("phone", 4.0, "ffa", "a", 10, 10, 9)]
    kept = cs.gain_kept(cs.summarize(rows))
    assert kept[("phone", "ffa")]["kept"] == pytest.approx(0.8) and kept[("phone", "ffa")]["goal_met"]
    assert cs.gain_kept(cs.summarize(rows[1:])) == {}  # no non-private configuration: nothing to compare


def test_client_rows_use_the_best_global_adapter_per_client():
    results = {"profiles": {"hospital": {"epsilons": {"none": {
        "epsilon": None,
        "local_only": {"a": {"perplexity": 9.0}, "b": {"perplexity": 9.0}},
        "runs": {
            "ffa": {"clients": {"a": {"global_only": 8.0, "personalized": 7.0}, "b": {"global_only": 12.0, "personalized": 10.0}}},
            "fedsa": {"clients": {"a": {"global_only": 20.0, "personalized": 7.5}, "b": {"global_only": 11.0, "personalized": 8.0}}},
        },
    }}}}}
    rows = {(r.strategy, r.client_id): r for r in cs.client_rows(results)}
    assert rows[("fedsa", "a")].global_only == 8.0  # ffa's global is better for a: the stricter baseline
    assert rows[("ffa", "b")].global_only == 11.0
    assert not cs.personalized_wins(rows[("ffa", "b")])  # 10 > local 9
    assert cs.personalized_wins(rows[("fedsa", "b")])


def test_option_parsing():
    assert cs.parse_epsilons("none, 1,4,8") == [None, 1.0, 4.0, 8.0]
    with pytest.raises(Exception):
        cs.parse_epsilons("0")
    assert cs.parse_per_profile("6", ["hospital", "phone"], {}) == {"hospital": 6, "phone": 6}
    assert cs.parse_per_profile("phone=10", ["hospital", "phone"], {"hospital": 4, "phone": 8}) == {"hospital": 4, "phone": 10}
    parser = cs.build_parser()
    argv = ["--quick", "--epsilons", "8"]
    settings = cs.settings_from_args(parser.parse_args(argv), argv)
    assert settings.epsilons == [8.0] and settings.rounds == 1 and settings.strategies == ["fedsa"]  # explicit wins over --quick
    assert settings.out != str(cs.DEFAULT_OUT)  # a smoke run never overwrites docs/results
    argv = ["--data", "somewhere"]
    assert cs.settings_from_args(parser.parse_args(argv), argv).profile_labels() == ["custom"]


def test_results_audit_refuses_a_device_over_its_target_epsilon():
    private = RunConfig(dp="record", target_epsilon=8.0)
    cs._audit_spent(private, "ok", 7.99)
    with pytest.raises(RuntimeError, match="phone-03 spent"):
        cs._audit_spent(private, "phone-03", 8.01)
    cs._audit_spent(RunConfig(dp="none"), "no DP", None)


# ---- end to end, with Ray --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_comparison_end_to_end(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "simulations.studies.compare_strategies", "--quick", "--epsilons", "8",
         "--out", str(out), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    entry = results["profiles"]["hospital"]["epsilons"]["8"]
    assert len(entry["local_only"]) == 2
    for local in entry["local_only"].values():
        assert local["epsilon"] <= 8.0 + 1e-9
    run = entry["runs"]["fedsa"]
    assert run["max_rel_diff_vs_federation_eval"] < 1e-3  # in-process evaluation = the federation's own
    for client in run["clients"].values():
        assert client["epsilon_after_federation"] < client["epsilon_after_finetune"] <= 8.0 + 1e-9
    assert run["upload_bytes"]["mean_per_client_per_round"] > 0
    assert {"win_share", "gain"} <= set(results["summary"][0])
    for name in ("perplexity_hospital.png", "gain_vs_epsilon.png", "upload_bytes.png"):
        assert (out / name).stat().st_size > 5_000
    assert "Goals" in (out / "results.md").read_text()


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
    assert cs.selection_rows(results) == [["phone", "fedavg", "11.00 (min 9, max 13)", "8.00 (min 4, max 12)", "0.17 (min 0.1, max 0.25)", "1/2"]]
