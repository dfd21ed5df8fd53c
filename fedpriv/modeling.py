"""Base model, tokenizer and LoRA adapter: the pieces both the device and the server need.

The server never loads the base model for aggregation; it only needs the adapter's tensor layout,
which `initial_adapter_state` gives it (built from the same seed the clients use).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch

from fedpriv.config import DEFAULT_MODEL, RunConfig
from fedpriv.errors import ConfigError
from fedpriv.models.registry import AUTO_LORA_TARGETS, installed_model_dir, lora_targets_for

# Where the default model sits inside the `fedpriv` package.
DEFAULT_MODEL_SUBDIR = Path("fedpriv") / "assets" / "default-model"
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default-model"
# The files without which the directory is not the model (a Flower App Bundle carries the JSON files
# of the folder but leaves out the weights).
DEFAULT_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")

_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")  # "gpt2", "org/name"; anything else is a path


def installed_default_model_dirs() -> list[Path]:
    """The default model of the installed `fedpriv` distribution: the source folder of an editable
    install (`pip install -e .`, PEP 610 direct_url.json) or the package inside site-packages."""
    from importlib import metadata

    try:
        dist = metadata.distribution("fedpriv")
    except metadata.PackageNotFoundError:
        return []
    found: list[Path] = []
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except json.JSONDecodeError:
        direct = {}
    url = urlparse(str(direct.get("url", "")))
    if url.scheme == "file" and direct.get("dir_info", {}).get("editable"):
        found.append(Path(unquote(url.path)) / DEFAULT_MODEL_SUBDIR)
    found.append(Path(str(dist.locate_file(DEFAULT_MODEL_SUBDIR))))
    return found


def default_model_dir(candidates: list[Path] | None = None) -> Path:
    """The shipped default model: next to this module (a checkout, a wheel), else where the installed
    `fedpriv` distribution keeps it. A Flower App Bundle runs this code from a copy without the weights
    (`flwr run` ships only code and text files), so the copy next to the module is not always whole."""
    candidates = [DEFAULT_MODEL_DIR, *installed_default_model_dirs()] if candidates is None else candidates
    for folder in candidates:
        if all((folder / name).is_file() for name in DEFAULT_MODEL_FILES):
            return folder
    looked = ", ".join(dict.fromkeys(str(folder) for folder in candidates))
    raise ConfigError(
        "model",
        f"the default model is not complete in any of {looked} (needs {', '.join(DEFAULT_MODEL_FILES)}); install fedpriv "
        "on this machine (`pip install -e .` in the repository) or rebuild it with `python -m simulations.studies.default_model`",
    )


def resolve_model(name: str) -> str:
    """Map the `model` config value to something `from_pretrained` can load offline.

    "default" is the shipped small Llama (`default_model_dir`); an installable model's name
    (`fedpriv model list`) is its cache folder, once installed; an existing directory is used as is;
    anything else is treated as a Hugging Face model id, which must already be in the local cache
    (fedpriv never downloads at run time unless the user sets HF_HUB_OFFLINE=0 themselves).
    """
    if name == DEFAULT_MODEL:
        return str(default_model_dir())
    installed = installed_model_dir(name)  # None unless `name` is an installable model; not installed: ConfigError
    if installed is not None:
        return str(installed)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError("model", f"{path} has no config.json: not a Hugging Face model directory")
        return str(path)
    if not _HUB_ID.fullmatch(name) or name.startswith("."):
        raise ConfigError("model", f"model path not found: {name}")
    return name  # a hub id: from_pretrained resolves it from the local cache


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    source = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as err:
        raise ConfigError("model", f"cannot load a tokenizer from {name!r} offline: {err}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(name: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    source = resolve_model(name)
    try:
        # fp32: Opacus per-sample gradients and Flower's ArrayRecord (no bf16) both need it.
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as err:
        raise ConfigError("model", f"cannot load {name!r} offline (not a local path, not in the Hugging Face cache): {err}") from None
    model.config.use_cache = False
    return model


def lora_target_modules(config: RunConfig) -> list[str]:
    """`lora-targets` as module names; `auto` = the usual ones for the model's architecture."""
    if config.lora_targets.strip() != AUTO_LORA_TARGETS:
        return [t.strip() for t in config.lora_targets.split(",") if t.strip()]
    from transformers import AutoConfig

    source = resolve_model(config.model)
    try:
        model_type = AutoConfig.from_pretrained(source).model_type
    except (OSError, ValueError) as err:
        raise ConfigError("model", f"cannot read the configuration of {config.model!r} offline: {err}") from None
    return lora_targets_for(model_type)


def lora_config(config: RunConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        target_modules=lora_target_modules(config),
        lora_dropout=0.0,  # dropout breaks the per-sample/batch gradient equivalence Opacus relies on
        bias="none",
        task_type="CAUSAL_LM",
    )


def build_lora_model(config: RunConfig, base: torch.nn.Module | None = None):
    """Base model (frozen) + freshly initialised LoRA adapter, initialised from `config.seed` so that
    every participant that builds it gets the same starting adapter."""
    from peft import get_peft_model

    base = base if base is not None else load_base_model(config.model)
    torch.manual_seed(config.seed)
    try:
        model = get_peft_model(base, lora_config(config))
    except ValueError as err:  # e.g. target modules not found in this architecture
        raise ConfigError("lora-targets", str(err)) from None
    return model


def adapter_state(model) -> OrderedDict[str, torch.Tensor]:
    """The trainable LoRA tensors only, detached fp32 copies, with peft's adapter-name-free keys."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    return OrderedDict((k, v.detach().to(torch.float32).clone()) for k, v in state.items())


def load_adapter_state(model, state: dict[str, torch.Tensor]) -> None:
    """Load adapter tensors; every expected key must be present with the right shape."""
    from peft import set_peft_model_state_dict

    expected = adapter_state(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"adapter keys do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(f"adapter tensor {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")
    set_peft_model_state_dict(model, {k: torch.as_tensor(v) for k, v in state.items()})


def initial_adapter_state(config: RunConfig) -> OrderedDict[str, torch.Tensor]:
    return adapter_state(build_lora_model(config))


def state_num_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())
