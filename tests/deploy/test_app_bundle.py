"""What `flwr run` ships (the Flower App Bundle) and what it needs from each machine: the run-config
keys it may override, only code in the bundle, and the default model found where fedpriv is installed."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from fedpriv.config import RunConfig
from fedpriv.errors import ConfigError
from fedpriv.modeling import DEFAULT_MODEL_FILES, default_model_dir, installed_default_model_dirs

ROOT = Path(__file__).resolve().parents[2]
CODE = ("fedpriv", "client", "server", "strategies", "simulations")


def test_every_run_config_key_is_declared_for_flwr_run():
    # `flwr run --run-config k=v` refuses a key that [tool.flwr.app.config] does not declare.
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    defaults = RunConfig()
    expected = {f.name.replace("_", "-"): ("" if getattr(defaults, f.name) is None else getattr(defaults, f.name))
                for f in dataclasses.fields(RunConfig)}
    assert declared == expected


def _copy_code(dest: Path) -> Path:
    for package in CODE:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_bundle_holds_code_only_never_data_runs_or_weights(tmp_path):
    from flwr.cli.build import build_fab_from_disk

    app = _copy_code(tmp_path / "fedpriv")
    (app / "data" / "hospital").mkdir(parents=True)
    (app / "data" / "hospital" / "patient-notes.jsonl").write_text('{"text": "Jane Doe, MRN 1234"}\n')
    (app / "runs" / "r1").mkdir(parents=True)
    (app / "runs" / "r1" / "metrics.json").write_text("{}")
    (app / "docs").mkdir()
    (app / "docs" / "notes.md").write_text("# notes")
    (app / "fedpriv" / "assets" / "default-model" / "model.safetensors").write_bytes(b"weights")
    names = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(app))).namelist()
    assert {"server/server_app.py", "client/client_app.py", "fedpriv/modeling.py", "simulations/simulate.py"} <= set(names)
    assert not [n for n in names if n.startswith(("data/", "runs/", "docs/", "tests/", "simulations/studies/"))]
    assert not [n for n in names if not n.endswith((".py", ".toml", "CONTENT"))], names


def test_default_model_is_the_first_complete_candidate(tmp_path):
    fab_copy, installed = tmp_path / "fab", tmp_path / "installed"
    for folder in (fab_copy, installed):
        folder.mkdir()
        for name in ("config.json", "tokenizer.json"):
            (folder / name).write_text("{}")
    (installed / "model.safetensors").write_bytes(b"w")
    assert default_model_dir([fab_copy, installed]) == installed
    (installed / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=f"not complete in any of {fab_copy}, {installed} "
                                          r"\(needs config\.json, model\.safetensors, tokenizer\.json\)"):
        default_model_dir([fab_copy, installed])


class _Distribution:
    def __init__(self, direct_url: dict | None, site: Path):
        self.direct_url, self.site = direct_url, site

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.direct_url) if name == "direct_url.json" and self.direct_url is not None else None

    def locate_file(self, path) -> Path:
        return self.site / path


def test_installed_distribution_is_found_editable_or_not(monkeypatch, tmp_path):
    from importlib import metadata

    editable = _Distribution({"url": (tmp_path / "my checkout").as_uri(), "dir_info": {"editable": True}}, tmp_path / "site")
    monkeypatch.setattr(metadata, "distribution", lambda name: editable)
    assert installed_default_model_dirs()[0] == tmp_path / "my checkout" / "fedpriv" / "assets" / "default-model"
    wheel = _Distribution(None, tmp_path / "site-packages")
    monkeypatch.setattr(metadata, "distribution", lambda name: wheel)
    assert installed_default_model_dirs() == [tmp_path / "site-packages" / "fedpriv" / "assets" / "default-model"]


def test_code_run_from_a_bundle_copy_finds_the_installed_default_model(tmp_path):
    """What a SuperNode does: import fedpriv from the bundle (no weights) and resolve "default"."""
    _copy_code(tmp_path / "bundle")
    assert not (tmp_path / "bundle" / "fedpriv" / "assets" / "default-model" / "model.safetensors").exists()
    probe = "import fedpriv.modeling as m; print(m.__file__); print(m.resolve_model('default'))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path / "bundle", capture_output=True, text=True, check=True)
    module, resolved = done.stdout.split()
    assert module.startswith(str(tmp_path / "bundle"))  # the bundle's code ...
    assert not resolved.startswith(str(tmp_path))  # ... and the installed fedpriv's model
    assert all((Path(resolved) / name).is_file() for name in DEFAULT_MODEL_FILES)
