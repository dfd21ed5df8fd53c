"""Run configuration shared by the ServerApp, the ClientApp and the simulation driver.

One typed dataclass, validated in one place, so every entry point (CLI flags, Flower run config,
tests) fails the same way: a `ConfigError` whose message names the offending key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedpriv.errors import ConfigError

PROFILES = ("hospital", "phone")
ACCOUNTANTS = ("prv", "rdp")
GRAD_SAMPLE_MODES = ("hooks", "ghost")
# AdamW's step under record-level DP-SGD (client.dp_training.dp_learning_rate). When the noise
# dominates the gradient, Adam moves each coordinate about one step per update in a random
# direction, so after T steps the adapter has drifted ~step·√T; `capped` bounds that drift by
# DP_WALK_RADIUS (step ≤ DP_WALK_RADIUS/√T). The radius is an empirical default for LoRA adapters
# of the shipped model, not a derived bound; the cap binds only on long runs, once
# T > (DP_WALK_RADIUS·max(σ, 1)/learning-rate)².
DP_WALK_RADIUS = 0.15
DP_STEP_SIZES = ("capped", "inverse-sigma", "fixed")
DP_STEP_RULES = {
    "capped": f"learning rate × min(1, 1/σ), at most {DP_WALK_RADIUS:g}/√T (T: the device's planned DP-SGD steps)",
    "inverse-sigma": "learning rate × min(1, 1/σ)",
    "fixed": "the learning rate as given",
}
DP_STEP_HELP = "record-level DP-SGD's AdamW step: " + "; ".join(f"{name} = {rule}" for name, rule in DP_STEP_RULES.items())
# What record-level ε covers. `all`: every training on the device's records, including the
# personalization that stays on it (and the local-only baseline). `uploads`: what leaves the device,
# i.e. the federation's updates, so the whole budget goes there; the personalization and local-only,
# which never leave the device, train without noise and choose epochs and λ on validation. That is
# joint DP (Jain et al., NeurIPS 2021): no other party's view depends on a record beyond ε, while a
# device's own model may use its own records freely (as under client-level DP).
DP_SCOPES = ("all", "uploads")
DP_SCOPE_COVERS = {
    "all": "every training on the device's records, the on-device fine-tuning included",
    "uploads": "only what leaves the device (the federation's updates); the on-device fine-tuning trains without noise (joint DP)",
}
DP_SCOPE_HELP = "what record-level ε covers: " + "; ".join(f"{name} = {covers}" for name, covers in DP_SCOPE_COVERS.items())
DP_MODES = ("auto", "record", "client", "both", "none")
STRATEGIES = ("auto", "fedavg", "ffa", "hetlora", "fedsa")
# Which DP a profile gets by default: a hospital protects each patient record (record-level);
# a phone fleet protects each user, i.e. the whole device (client-level DP-FedAvg).
DEFAULT_DP = {"hospital": "record", "phone": "client"}
NOISE_CHOICES = ("auto", "secure", "seeded")
# Whether the server sees only the sum of the updates (SecAgg+, docs/secure-aggregation.md) by
# default: a phone fleet's server is a party the users need not trust with their single updates;
# a few hospitals default to plaintext aggregation (trimmed mean and hetlora svd need it).
DEFAULT_SECURE_AGGREGATION = {"hospital": False, "phone": True}
# Coordinates are clipped to ±this before quantization when no L2 bound covers them (see
# RunConfig.secure_aggregation_range): an update a local round moves by more than 1 per coordinate
# is far outside what LoRA fine-tuning does at fedpriv's learning rates.
DEFAULT_SECURE_AGGREGATION_RANGE = 1.0
DEFAULT_MODEL = "default"  # the small Llama shipped in fedpriv/assets/default-model


@dataclass
class RunConfig:
    """Everything that defines a federated run. Field names map 1:1 to Flower run-config keys
    (underscores become dashes) and to `fedpriv simulate` flags."""

    profile: str = "hospital"
    data_dir: str = ""  # a user's own data: one <client_id>.jsonl per client; "" = synthetic
    num_clients: int | None = None  # None = the profile's default (or every file in data_dir)
    records_per_client: int = 200
    rounds: int = 3
    clients_per_round: int | None = None  # None = the profile's default: hospital all clients, phone a sample
    # participation (server/participation.py; None or 0 = the profile's default, 0 for Flower's run config)
    min_train_nodes: int | None = None  # valid train replies a round needs to update the global adapter
    min_evaluate_nodes: int | None = None  # evaluate replies a round needs for its aggregate evaluation
    round_timeout: float | None = None  # seconds the server waits for the replies of one train or evaluate step
    model: str = DEFAULT_MODEL
    # LoRA
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: str = "q_proj,v_proj"
    # local training
    local_epochs: int = 1
    finetune_epochs: int = 0  # personalization: local epochs after the last round (inside the same ε budget)
    batch_size: int = 16
    learning_rate: float = 5e-3
    max_seq_len: int = 64
    eval_fraction: float = 0.2
    # personalization without record-level DP: this fraction of the train split picks the epochs and
    # the mixture weight (client.selection); 0 = fixed epochs and λ, as under DP
    validation_fraction: float = 0.2
    # aggregation (strategies/): auto = ffa under client-level DP, else fedavg
    strategy: str = "auto"
    client_ranks: str = ""  # hetlora: "client-id=rank,..." (others train at lora-rank)
    hetlora_method: str = "zero_pad"  # or "svd" (FlexLoRA)
    norm_bound: float = 0.0  # > 0: bound each update's L2 norm (robust; works with secure aggregation)
    trim_beta: float = 0.0  # > 0: coordinate-wise trimmed mean, fraction trimmed at each end (plaintext only)
    # the server sees only the sum of the updates (SecAgg+); None = the profile's default (phone on).
    # Flower's run config has no None: "auto" there.
    secure_aggregation: bool | None = None
    # secure aggregation: each coordinate of an update is clipped to ±this before it is quantized;
    # 0 = the L2 bound the device clips to (client clipping norm, norm bound), else 1
    secure_aggregation_range: float = 0.0
    # the server's step on the averaged update: global += η·mean(update) (1 = plain FedAvg)
    server_learning_rate: float = 1.0
    # which DP: record (DP-SGD on the device), client (DP-FedAvg at the server), both, none
    dp: str = "auto"
    # client-level DP-FedAvg
    client_noise_multiplier: float = 1.0
    client_clipping_norm: float = 1.0
    client_target_epsilon: float = 0.0
    # record-level DP-SGD
    noise_multiplier: float = 1.0
    target_epsilon: float = 0.0  # > 0: calibrate sigma so that all rounds spend exactly this (also the budget)
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    grad_sample_mode: str = "hooks"
    dp_step_size: str = "capped"  # DP_STEP_SIZES: the step shrinks with the noise and the steps (see client.dp_training)
    # DP_SCOPES: by default ε covers what leaves the device (uploads); `all` also covers the on-device
    # personalization, for deployments that share the personalized model or its outputs.
    dp_scope: str = "uploads"
    # where DP noise comes from (fedpriv.noise): secure (a CSPRNG keyed from the OS) or seeded
    # (reproducible); auto = seeded under `fedpriv simulate`, secure under `flwr run`
    noise: str = "auto"
    canaries: int = 0  # audit: one-run canaries written into the devices' data (simulations.canaries)
    # bookkeeping
    seed: int = 0
    out: str = ""
    state_dir: str = ""  # simulation: where virtual devices keep their ledgers (a real device sets node config state-dir)
    resume: bool = False  # continue the run in `out` from its last round checkpoint (server/server_state.py)

    # ---- conversions -------------------------------------------------------------------------

    def to_flower(self) -> dict[str, bool | int | float | str]:
        """Flat dict for Flower's run config / ConfigRecord (no nested values, no None)."""
        flat: dict[str, bool | int | float | str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            flat[f.name.replace("_", "-")] = value
        return flat

    @classmethod
    def from_flower(cls, values: dict[str, Any]) -> RunConfig:
        """Build from a Flower run config / ConfigRecord; unknown keys are an error (typos must not
        silently fall back to defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in names:
                raise ConfigError(key, f"unknown configuration key (known: {', '.join(sorted(n.replace('_', '-') for n in names))})")
            kwargs[name] = value
        return cls(**kwargs).validated()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def dp_mode(self) -> str:
        return DEFAULT_DP[self.profile] if self.dp == "auto" else self.dp

    @property
    def secure_aggregation_on(self) -> bool:
        """Whether the run aggregates securely: the setting, or the profile's default."""
        if self.secure_aggregation is None:
            return DEFAULT_SECURE_AGGREGATION[self.profile]
        return self.secure_aggregation

    @property
    def record_dp(self) -> bool:
        return self.dp_mode in ("record", "both")

    @property
    def client_dp(self) -> bool:
        return self.dp_mode in ("client", "both")

    @property
    def on_device_dp(self) -> bool:
        """Whether training that never leaves the device (fine-tuning, local-only) runs DP-SGD."""
        return self.record_dp and self.dp_scope == "all"

    def on_device(self) -> RunConfig:
        """The config for training that never leaves the device: this one, or under `dp-scope uploads`
        the same without record-level DP (client-level DP, if any, only concerns what is sent)."""
        if self.on_device_dp or not self.record_dp:
            return self
        return dataclasses.replace(self, dp="client" if self.dp_mode == "both" else "none")

    # ---- validation --------------------------------------------------------------------------

    def validated(self) -> RunConfig:
        """Return self after checking every field; raise ConfigError naming the first bad key."""
        _coerce_types(self)
        if self.profile not in PROFILES:
            raise ConfigError("profile", f"must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.data_dir:
            path = Path(self.data_dir)
            if not path.is_dir():
                raise ConfigError("data-dir", f"directory not found: {path}")
        if self.num_clients is not None:
            _positive("num-clients", self.num_clients)
        _positive("records-per-client", self.records_per_client)
        _positive("rounds", self.rounds)
        if self.clients_per_round is not None:
            _positive("clients-per-round", self.clients_per_round)
        if self.num_clients and self.clients_per_round and self.clients_per_round > self.num_clients:
            raise ConfigError("clients-per-round", f"{self.clients_per_round} is more than num-clients={self.num_clients}")
        if self.min_train_nodes is not None:
            _positive("min-train-nodes", self.min_train_nodes, allow_zero=True)
            if self.clients_per_round and self.min_train_nodes > self.clients_per_round:
                raise ConfigError("min-train-nodes", f"{self.min_train_nodes} is more than clients-per-round={self.clients_per_round}")
        if self.min_evaluate_nodes is not None:
            _positive("min-evaluate-nodes", self.min_evaluate_nodes, allow_zero=True)
        if self.round_timeout is not None:
            _positive("round-timeout", self.round_timeout, allow_zero=True)
        if not self.model:
            raise ConfigError("model", "must name the default model, a local path or a Hugging Face model id")
        _positive("lora-rank", self.lora_rank)
        _positive("lora-alpha", self.lora_alpha)
        if not [t for t in self.lora_targets.split(",") if t.strip()]:
            raise ConfigError("lora-targets", "must list at least one module name, e.g. q_proj,v_proj")
        _positive("local-epochs", self.local_epochs)
        _positive("finetune-epochs", self.finetune_epochs, allow_zero=True)
        _positive("batch-size", self.batch_size)
        _positive("learning-rate", self.learning_rate)
        _positive("max-seq-len", self.max_seq_len)
        if self.max_seq_len < 8:
            raise ConfigError("max-seq-len", "must be at least 8 tokens")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError("eval-fraction", f"must be in (0, 1), got {self.eval_fraction}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError("validation-fraction", f"must be in [0, 1), got {self.validation_fraction}")
        if self.dp_step_size not in DP_STEP_SIZES:
            raise ConfigError("dp-step-size", f"must be one of {', '.join(DP_STEP_SIZES)}, got {self.dp_step_size!r}")
        if self.dp_scope not in DP_SCOPES:
            raise ConfigError("dp-scope", f"must be one of {', '.join(DP_SCOPES)}, got {self.dp_scope!r}")
        if self.noise not in NOISE_CHOICES:
            raise ConfigError("noise", f"must be one of {', '.join(NOISE_CHOICES)}, got {self.noise!r}")
        _positive("canaries", self.canaries, allow_zero=True)
        if self.dp not in DP_MODES:
            raise ConfigError("dp", f"must be one of {', '.join(DP_MODES)}, got {self.dp!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError("strategy", f"must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.hetlora_method not in ("zero_pad", "svd"):
            raise ConfigError("hetlora-method", f"must be zero_pad or svd, got {self.hetlora_method!r}")
        _positive("norm-bound", self.norm_bound, allow_zero=True)
        _positive("server-learning-rate", self.server_learning_rate)
        if self.server_learning_rate != 1.0 and self.strategy == "hetlora" and self.hetlora_method == "svd":
            raise ConfigError("server-learning-rate", "hetlora-method svd rebuilds the global adapter from the replies; "
                              "it takes no server learning rate other than 1")
        if not 0.0 <= self.trim_beta < 0.5:
            raise ConfigError("trim-beta", f"must be in [0, 0.5), got {self.trim_beta}")
        _positive("secure-aggregation-range", self.secure_aggregation_range, allow_zero=True)
        if self.secure_aggregation_on:
            default = " (on by default for the phone profile)" if self.secure_aggregation is None else ""
            off = "; turn it off with --no-secure-aggregation (run config secure-aggregation=false)"
            if self.trim_beta > 0:
                raise ConfigError("trim-beta", "coordinate-wise trimmed mean needs every update in plaintext: it cannot be "
                                  f"combined with secure aggregation{default}{off}")
            if self.strategy == "hetlora" and self.hetlora_method == "svd":
                raise ConfigError("hetlora-method", "svd (FlexLoRA) multiplies each client's factors and needs them in "
                                  f"plaintext: it cannot be combined with secure aggregation{default}; use zero_pad{off}")
        if self.client_dp:
            _positive("client-clipping-norm", self.client_clipping_norm)
            _positive("client-target-epsilon", self.client_target_epsilon, allow_zero=True)
            if self.client_target_epsilon == 0:
                _positive("client-noise-multiplier", self.client_noise_multiplier)
        if self.record_dp or self.client_dp:
            if not 0.0 < self.delta < 1.0:
                raise ConfigError("delta", f"must be in (0, 1), got {self.delta}")
        if self.record_dp:
            if self.target_epsilon < 0 or not math.isfinite(self.target_epsilon):
                raise ConfigError("target-epsilon", f"must be a positive number (or 0 to use noise-multiplier), got {self.target_epsilon}")
            if self.target_epsilon == 0:
                _positive("noise-multiplier", self.noise_multiplier)
            _positive("max-grad-norm", self.max_grad_norm)
            if self.accountant not in ACCOUNTANTS:
                raise ConfigError("accountant", f"must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}")
            if self.grad_sample_mode not in GRAD_SAMPLE_MODES:
                raise ConfigError("grad-sample-mode", f"must be one of {', '.join(GRAD_SAMPLE_MODES)}, got {self.grad_sample_mode!r}")
        return self


def _positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise ConfigError(key, f"must be {bound}, got {value}")


def _coerce_types(config: RunConfig) -> None:
    """Flower hands ints for floats and vice versa; coerce to the declared type or fail naming the key."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if kind.endswith(" | None"):
            if value is None:
                continue
            kind = kind.removesuffix(" | None")
            if kind == "bool" and isinstance(value, str) and value.lower() in ("auto", ""):
                setattr(config, f.name, None)  # Flower's run config has no None: "auto" is the default
                continue
        key = f.name.replace("_", "-")
        try:
            if kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0"):
                        raise ValueError(value)
                    value = value.lower() in ("true", "1")
                value = bool(value)
            elif kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                value = int(value)
            elif kind == "float":
                value = float(value)
            elif kind == "str":
                value = str(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected {kind}, got {value!r}") from None
        setattr(config, f.name, value)
