"""Reusing results of an earlier comparison, and knowing when not to: which settings a result depends
on, what the machine and the base model were (`machine_info`, `model_info`, recorded in results.json),
and the no-DP rows taken from an earlier results.json (`--no-dp-from`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedpriv.config import RunConfig
from simulations.studies.comparison.formatting import json_ready
from simulations.studies.comparison.settings import Settings

# Settings that change nothing in a run without DP: a comparison that differs from an earlier one
# only in these may take that one's no-DP rows instead of rerunning them (`--no-dp-from`).
DP_ONLY_FIELDS = ("epsilons", "delta", "accountant", "max_grad_norm", "dp_step_size", "dp_scope", "dp_server_learning_rate")
NOT_RESULT_FIELDS = ("workers", "out", "report", "runs_dir", "no_dp_from")

# Settings added after results were first recorded, with the one behaviour every earlier run had:
# a results.json without them was made with that value.
VALUE_BEFORE_RECORDED = {"dp_step_size": "fixed", "dp_scope": "all", "dp_server_learning_rate": 1.0}

# Run-config fields a training without record-level DP does not read (the DP-SGD settings, and the
# federation's server step and output folder).
DP_SGD_ONLY_CONFIG_FIELDS = ("target_epsilon", "noise_multiplier", "delta", "max_grad_norm", "accountant",
                             "grad_sample_mode", "dp_step_size", "dp_scope", "server_learning_rate", "out")


def as_recorded_now(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with VALUE_BEFORE_RECORDED filled in where they are missing."""
    return {**VALUE_BEFORE_RECORDED, **settings}


def differing_settings(found: dict[str, Any], wanted: dict[str, Any], ignored: Sequence[str] = ()) -> list[str]:
    """Names of the settings (results.json `settings`, JSON-ready) in which two comparisons differ,
    `ignored` aside; a setting only one of them records counts as differing (unless it is one of
    VALUE_BEFORE_RECORDED, which stands in for it)."""
    found, wanted = as_recorded_now(found), as_recorded_now(wanted)
    keys = (set(found) | set(wanted)) - set(ignored)
    return sorted(k for k in keys if k not in found or k not in wanted or found[k] != wanted[k])


def describe_differences(found: dict[str, Any], wanted: dict[str, Any], names: Sequence[str]) -> str:
    """`names` (from `differing_settings`) with both values, for a refusal the user can act on:
    `dp_step_size "inverse-sigma" there, "capped" here`."""
    found, wanted = as_recorded_now(found), as_recorded_now(wanted)

    def value(settings: dict[str, Any], name: str) -> str:
        return json.dumps(settings[name]) if name in settings else "not recorded"
    return "; ".join(f"{name} {value(found, name)} there, {value(wanted, name)} here" for name in names)


def same_local_only_training(without_dp: RunConfig, config: RunConfig) -> bool:
    """Whether local-only under `config` trains exactly as it did without DP: true under `dp-scope
    uploads` (it never leaves the device, `RunConfig.on_device`), false whenever it runs DP-SGD or any
    setting it reads differs. Saves retraining the same models (about 5.5 min a seed at 32 phones)."""
    def trained_as(c: RunConfig) -> RunConfig | None:
        c = c.on_device()
        return None if c.record_dp else dataclasses.replace(c, **{f: getattr(without_dp, f) for f in DP_SGD_ONLY_CONFIG_FIELDS})
    reference = trained_as(without_dp)
    return reference is not None and trained_as(config) == reference


def machine_info() -> dict[str, Any]:
    """The machine a comparison runs on, as results.json records it (`environment_differences` reads it)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
    with contextlib.suppress(Exception):  # the vector ISA torch dispatches its CPU kernels to (AVX2, AVX512, ...)
        import torch

        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024**2, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(Exception):
        import flwr
        import opacus
        import peft
        import torch
        import transformers

        info["versions"] = {
            "torch": torch.__version__, "flwr": flwr.__version__, "opacus": opacus.__version__,
            "peft": peft.__version__, "transformers": transformers.__version__,
        }
    info["gpu"] = "none"
    return info


def model_info(name: str) -> dict[str, Any]:
    """Which base model exactly (the default model is rebuilt by `python -m simulations.studies.default_model`)."""
    import hashlib

    from fedpriv.modeling import resolve_model

    path = Path(resolve_model(name))
    info: dict[str, Any] = {"name": name, "path": str(path)}
    weights = path / "model.safetensors"
    if weights.is_file():
        info["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    build = path / "build_info.json"
    if build.is_file():
        with contextlib.suppress(ValueError):
            raw = json.loads(build.read_text())
            info["build"] = {k: raw[k] for k in ("command", "param_count", "pretrained_perplexity") if k in raw}
    return info


def environment_differences(earlier: dict[str, Any], model: str) -> list[str]:
    """How the machine an earlier results.json was made on differs from this one in what changes the
    numbers: the processor and the vector instructions torch's CPU kernels use (`machine_info`), the
    library versions, and the base model's weights (`model_info`). The processor alone (AMD EPYC,
    AVX-512, against Intel Xeon) moved a no-DP local-only model from perplexity 238.85 to 247.23 with
    the same code, data, seed and libraries: float sums in another order differ in the last bit, and
    training amplifies that. Unrecorded counts as different, except the CPU capability, which results
    made before it was recorded lack (the processor name stands for it there)."""
    def recorded(machine: dict[str, Any], sha256: str | None) -> dict[str, Any]:
        return {"processor": machine.get("processor"), "cpu capability": machine.get("cpu_capability"),
                **machine.get("versions", {}), "model sha256": sha256}

    here = recorded(machine_info(), model_info(model).get("sha256"))
    there = recorded(earlier.get("machine", {}), earlier.get("model", {}).get("sha256"))
    if there["cpu capability"] is None:
        there.pop("cpu capability")
        here.pop("cpu capability")
    return [f"{name} {there.get(name) or 'not recorded'} there, {value} here" for name, value in here.items() if there.get(name) != value]


def reused_no_dp_entry(results_file: Path, profile: str, settings: Settings, clients: dict[str, Any]) -> dict[str, Any]:
    """The no-DP rows of `profile` from an earlier comparison's results.json, for a comparison that
    changes only what DP runs do. Refused (SystemExit naming the difference) unless every setting
    a no-DP run depends on is the same, it has this profile's no-DP rows for every strategy asked
    for, and its clients are the same (ids, split sizes and base-model perplexity on each held-out
    split, so the same data and split), and so is the machine (`environment_differences`). Our own
    code is not compared: reuse only after DP-only changes."""
    try:
        earlier = json.loads(Path(results_file).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"--no-dp-from {results_file}: cannot read it ({err})") from None
    # strategies: any superset will do (checked below)
    found, wanted = earlier.get("settings", {}), json_ready(dataclasses.asdict(settings))
    differing = differing_settings(found, wanted, (*DP_ONLY_FIELDS, *NOT_RESULT_FIELDS, "strategies"))
    if differing:
        raise SystemExit(f"--no-dp-from {results_file}: made with other settings ({', '.join(differing)} differ: "
                         f"{describe_differences(found, wanted, differing)})")
    environment = environment_differences(earlier, settings.model)
    if environment:
        raise SystemExit(f"--no-dp-from {results_file}: made on another machine ({'; '.join(environment)}); rerun the no-DP rows")
    entry = earlier.get("profiles", {}).get(profile, {}).get("epsilons", {}).get("none")
    missing = [s for s in settings.strategies if entry is None or s not in entry.get("runs", {})]
    if missing:
        raise SystemExit(f"--no-dp-from {results_file}: no no-DP rows for {profile} / {', '.join(missing)}")
    earlier_clients = earlier["profiles"][profile]["clients"]
    if set(earlier_clients) != set(clients) or any(
        earlier_clients[c]["train_records"] != v["train_records"] or earlier_clients[c]["held_out_records"] != v["held_out_records"]
        or not math.isclose(earlier_clients[c]["base_perplexity"], v["base_perplexity"], rel_tol=1e-6)
        for c, v in clients.items()
    ):
        raise SystemExit(f"--no-dp-from {results_file}: its {profile} clients or their splits differ from this comparison's")
    return {**entry, "runs": {s: entry["runs"][s] for s in settings.strategies}, "reused_from": str(results_file)}
