"""`fedpriv personalize RUN_DIR`: device-side personalization of a finished run (no Ray: the run
directory is built here the way `fedpriv simulate` leaves it)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from client.personalize import BaseModelCache
from fedpriv.cli import main
from fedpriv.config import RunConfig
from fedpriv.modeling import adapter_state
from simulations.synthetic import generate_federation, write_federation


def _fake_run(tmp_path, **overrides):
    run_dir = tmp_path / "run"
    write_federation(run_dir / "data", generate_federation("hospital", 2, 24, seed=1))
    values = dict(model="default", rounds=1, local_epochs=1, finetune_epochs=2, batch_size=8, max_seq_len=24,
                  learning_rate=2e-2, dp="none", data_dir=str(run_dir / "data"), state_dir=str(run_dir / "devices"), seed=0)
    values.update(overrides)
    config = RunConfig(**values).validated()
    # A global adapter that is not the base model: B moved off its zero init.
    state = adapter_state(BaseModelCache("default").lora_model(config))
    generator = torch.Generator().manual_seed(0)
    state = {k: (v + 0.02 * torch.randn(v.shape, generator=generator)) if "lora_B" in k else v for k, v in state.items()}
    (run_dir / "adapters" / "final").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(run_dir / "adapters" / "final" / "adapter_model.safetensors"))
    (run_dir / "metrics.json").write_text(json.dumps({"config": config.as_dict(), "rounds": []}))
    return run_dir, state


def test_personalize_fine_tunes_on_the_device_and_keeps_the_adapter_there(tmp_path):
    run_dir, global_state = _fake_run(tmp_path, validation_fraction=0.0)  # the fixed protocol: 2 epochs, λ = 0.5
    assert main(["personalize", str(run_dir), "--clients", "hospital-00-cardiology", "--global-weight", "0.5"]) == 0
    summary = json.loads((run_dir / "personalization.json").read_text())
    assert summary["strategy"] == "fedavg" and summary["global_weight"] == 0.5 and summary["delta"] is None
    assert list(summary["clients"]) == ["hospital-00-cardiology"]
    r = summary["clients"]["hospital-00-cardiology"]
    saved = load_file(r["adapter"])
    assert r["adapter"].startswith(str(run_dir / "devices" / "hospital-00-cardiology"))
    assert set(saved) == set(global_state)  # an adapter, nothing else
    assert any(not torch.equal(saved[k], global_state[k]) for k in saved)  # fine-tuning changed it
    assert r["finetuned_perplexity"] != pytest.approx(r["federated_perplexity"], rel=1e-6)
    # The mixture of two models that disagree beats the average of their log-losses (Jensen).
    mixed, fed, tuned = (math.log(r[k]) for k in ("personalized_perplexity", "federated_perplexity", "finetuned_perplexity"))
    assert mixed < 0.5 * fed + 0.5 * tuned
    assert r["epsilon"] is None and r["finetune_epochs"] == 2 and not r["selected_on_validation"]


def test_without_dp_each_device_chooses_epochs_and_weight_on_its_validation_slice(tmp_path, capsys):
    from client.personalize import PRIVATE_MODELS
    from client.selection import WEIGHT_GRID

    run_dir, _ = _fake_run(tmp_path)
    assert main(["personalize", str(run_dir)]) == 0
    assert "validation slice" in capsys.readouterr().out
    summary = json.loads((run_dir / "personalization.json").read_text())
    assert summary["global_weight"] is None  # chosen per device
    for r in summary["clients"].values():
        assert r["selected_on_validation"] and r["global_weight"] in WEIGHT_GRID
        assert 0 <= r["finetune_epochs"] <= 3  # rounds x local epochs + finetune epochs
        assert r["private_model"] in PRIVATE_MODELS


def test_a_copied_run_personalizes_its_own_devices_not_the_originals(tmp_path, monkeypatch):
    import shutil

    run_dir, _ = _fake_run(tmp_path)
    (run_dir / "devices" / "hospital-00-cardiology").mkdir(parents=True)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    monkeypatch.chdir(tmp_path)  # the recorded paths still name the original, which still exists
    assert main(["personalize", str(copy), "--clients", "hospital-00-cardiology"]) == 0
    assert (copy / "devices" / "hospital-00-cardiology" / "personalized_adapter.safetensors").is_file()
    assert not list(run_dir.glob("devices/*/personalized_adapter.safetensors"))  # the original is untouched


def test_dp_run_without_a_ledger_refuses_and_writes_nothing(tmp_path, capsys):
    run_dir, _ = _fake_run(tmp_path, dp="record", target_epsilon=2.0, accountant="rdp")
    assert main(["personalize", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "privacy ledger" in err and "hospital-00-cardiology" in err
    assert not (run_dir / "personalization.json").exists()
    assert not list((run_dir).glob("devices/*/personalized_adapter.safetensors"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda run: (run / "metrics.json").unlink(), "metrics.json: not found"),
        (lambda run: (run / "metrics.json").write_text(json.dumps({"config": {**json.loads((run / "metrics.json").read_text())["config"], "strategy": "hetlora"}})), "not 'hetlora'"),
        (lambda run: (run / "adapters" / "final" / "adapter_model.safetensors").unlink(), "no final global adapter"),
    ],
)
def test_bad_run_directory_is_named(tmp_path, capsys, change, message):
    run_dir, _ = _fake_run(tmp_path)
    change(run_dir)
    assert main(["personalize", str(run_dir)]) == 2
    assert message in capsys.readouterr().err


def test_unknown_client_and_bad_weight_are_named(tmp_path, capsys):
    run_dir, _ = _fake_run(tmp_path)
    assert main(["personalize", str(run_dir), "--clients", "nobody"]) == 2
    assert "nobody" in capsys.readouterr().err
    assert main(["personalize", str(run_dir), "--global-weight", "1.5"]) == 2
    assert "global-weight" in capsys.readouterr().err
