"""What defines a comparison (`Settings`, recorded in results.json) and how the command line becomes one."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fedpriv.config import RunConfig

DEFAULT_OUT = Path("docs/studies/comparison")
DEFAULT_REPORT = Path("docs/studies/comparison.md")
PROFILES = ("hospital", "phone")
STRATEGIES = ("fedavg", "ffa", "fedsa")  # the strategies whose results a device can personalize from
# `--quick`: a smoke configuration (options given explicitly win over these).
QUICK = {"profiles": "hospital", "epsilons": "none,8", "strategies": "fedsa", "num_clients": "2", "records_per_client": "20", "rounds": 1, "local_epochs": 1, "finetune_epochs": 1, "max_seq_len": 32}


@dataclass
class Settings:
    """Everything that defines a comparison (recorded in results.json)."""

    profiles: list[str] = field(default_factory=lambda: list(PROFILES))
    data_dir: str = ""
    epsilons: list[float | None] = field(default_factory=lambda: [None, 1.0, 4.0, 8.0])
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    # 15 local epochs in all (5 rounds x 2 + 5 fine-tuning): with 5 (3 x 1 + 2) every method was still
    # far from converged and local-only won by training longer on its own data (docs/studies/comparison.md).
    rounds: int = 5
    num_clients: dict[str, int] = field(default_factory=lambda: {"hospital": 4, "phone": 8})
    records_per_client: dict[str, int] = field(default_factory=lambda: {"hospital": 160, "phone": 160})
    # Half held out: 80 train records as before, and 80 (not 20) held-out records per client, so a
    # client's perplexity is measured on ~4x the tokens and the per-client comparisons are less noisy.
    eval_fraction: float = 0.5
    local_epochs: int = 2
    finetune_epochs: int = 5
    learning_rate: float = 2e-2  # 5e-3 (the simulate default) left every method under-trained here in trial runs
    lora_rank: int = 8
    lora_alpha: float = 16.0
    batch_size: int = 16
    max_seq_len: int = 64
    # personalized = λ·(federated model) + (1 − λ)·(fine-tuned model), mixed at the output
    # (client.interpolation). None: λ = ½ under DP (fixed before any run, never tuned on the held-out
    # splits), chosen on the validation slice without DP; a number: that λ everywhere.
    global_weight: float | None = None
    # Without DP: the fraction of each train split that selects epochs and λ (client.selection).
    validation_fraction: float = 0.2
    max_grad_norm: float = 0.3  # per-record gradient norms are ~0.5-1 here: clipping all of them raises signal/noise
    # Record-level DP: AdamW's step (fedpriv.config.DP_STEP_RULES, client.dp_training.dp_learning_rate).
    dp_step_size: str = "capped"
    # What record-level ε covers (fedpriv.config.DP_SCOPES): with `uploads` local-only and the
    # personalization never leave the device and train as without DP; the federation spends all of ε.
    dp_scope: str = "all"
    # The server's step η on the averaged update in the DP rows' federations (global += η·mean
    # update); the no-DP rows keep plain FedAvg (1). Screened at 2 and 4 on the tuning federation:
    # it scales the DP mean's noise with its signal, so it did not help (docs/studies/comparison.md).
    dp_server_learning_rate: float = 1.0
    # results.json of an earlier comparison whose no-DP rows are taken instead of rerun (`reuse.reused_no_dp_entry`).
    no_dp_from: str = ""
    delta: float = 1e-5
    # RDP: a (slightly looser) upper bound on the PRV/PLD ε, ~10x faster to evaluate on multi-round
    # ledgers here; σ is calibrated with the same accountant, so the stated ε is never exceeded.
    accountant: str = "rdp"
    model: str = "default"
    seed: int = 0
    workers: int = 2  # device-side worker processes (one torch thread each)
    out: str = str(DEFAULT_OUT)
    report: str = ""
    runs_dir: str = ""

    def profile_labels(self) -> list[str]:
        return ["custom"] if self.data_dir else list(self.profiles)

    def run_config(self, profile: str, epsilon: float | None, strategy: str, data_dir: str, out: str) -> RunConfig:
        # The comparison's protocol: every device trains in every round, in plaintext aggregation
        # (the phone profile's defaults sample a share of the fleet per round and aggregate securely,
        # which gives the same sum up to its quantization error, at a cost the studies need not pay).
        every_device = len(list(Path(data_dir).glob("*.jsonl"))) or None  # the devices of the prepared data
        return RunConfig(
            profile="hospital" if profile == "custom" else profile,
            data_dir=data_dir,
            num_clients=None,
            clients_per_round=every_device,
            min_train_nodes=every_device,
            secure_aggregation=False,
            rounds=self.rounds,
            model=self.model,
            lora_rank=self.lora_rank,
            lora_alpha=self.lora_alpha,
            local_epochs=self.local_epochs,
            finetune_epochs=self.finetune_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            max_seq_len=self.max_seq_len,
            eval_fraction=self.eval_fraction,
            validation_fraction=self.validation_fraction,
            strategy=strategy,
            dp="none" if epsilon is None else "record",
            target_epsilon=0.0 if epsilon is None else float(epsilon),
            delta=self.delta,
            max_grad_norm=self.max_grad_norm,
            accountant=self.accountant,
            dp_step_size=self.dp_step_size,
            dp_scope=self.dp_scope,
            server_learning_rate=1.0 if epsilon is None else self.dp_server_learning_rate,
            seed=self.seed,
            out=out,
        ).validated()


def parse_epsilons(text: str) -> list[float | None]:
    values: list[float | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lower() in ("none", "inf", "nodp", "no-dp"):
            values.append(None)
            continue
        value = float(part)
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"epsilon must be positive or 'none', got {part!r}")
        values.append(value)
    if not values:
        raise argparse.ArgumentTypeError("no epsilon given")
    return values


def parse_per_profile(text: str, profiles: Sequence[str], default: dict[str, int]) -> dict[str, int]:
    """'8' (every profile) or 'hospital=4,phone=8' (others keep their default)."""
    text = text.strip()
    if "=" not in text:
        return {p: int(text) for p in profiles}
    values = {p: default.get(p, 0) for p in profiles}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, value = part.partition("=")
        values[name.strip()] = int(value)
    return values


def settings_from_args(args: argparse.Namespace, argv: Sequence[str]) -> Settings:
    """The Settings of parsed command-line options (`compare_strategies.build_parser`); `argv` tells
    which options were given explicitly (they win over `--quick`). SystemExit naming a bad option."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    if args.quick:
        for key, value in QUICK.items():
            if "--" + key.replace("_", "-") not in given:
                setattr(args, key, value)
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    for profile in profiles:
        if profile not in PROFILES:
            raise SystemExit(f"--profiles: unknown profile {profile!r} (hospital, phone)")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise SystemExit(f"--strategies: {strategy!r} is not compared here (fedavg, ffa, fedsa)")
    if not 0.0 < args.held_out < 1.0:
        raise SystemExit(f"--held-out: must be between 0 and 1 (exclusive), got {args.held_out}")
    if args.global_weight is not None and not 0.0 <= args.global_weight <= 1.0:
        raise SystemExit(f"--global-weight: must be between 0 and 1, got {args.global_weight}")
    if not 0.0 <= args.validation_fraction < 1.0:
        raise SystemExit(f"--validation-fraction: must be in [0, 1), got {args.validation_fraction}")
    if not (math.isfinite(args.dp_server_learning_rate) and args.dp_server_learning_rate > 0):
        raise SystemExit(f"--dp-server-learning-rate: must be a positive number, got {args.dp_server_learning_rate}")
    d = Settings()
    labels = ["custom"] if args.data else profiles
    out = args.out or (str(DEFAULT_OUT) if not args.quick else str(Path("runs") / f"compare-quick-{datetime.now():%Y%m%d-%H%M%S}" / "results"))
    report = args.report or (str(DEFAULT_REPORT) if Path(out) == DEFAULT_OUT else str(Path(out) / "results.md"))
    return Settings(
        profiles=labels,
        data_dir=args.data,
        epsilons=parse_epsilons(args.epsilons),
        strategies=strategies,
        rounds=args.rounds,
        num_clients=parse_per_profile(str(args.num_clients), labels, d.num_clients),
        records_per_client=parse_per_profile(str(args.records_per_client), labels, d.records_per_client),
        eval_fraction=args.held_out,
        local_epochs=args.local_epochs,
        finetune_epochs=args.finetune_epochs,
        learning_rate=args.learning_rate,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        batch_size=args.batch_size,
        max_seq_len=args.max_seq_len,
        max_grad_norm=args.max_grad_norm,
        global_weight=args.global_weight,
        validation_fraction=args.validation_fraction,
        delta=args.delta,
        accountant=args.accountant,
        dp_step_size=args.dp_step_size,
        dp_scope=args.dp_scope,
        dp_server_learning_rate=args.dp_server_learning_rate,
        no_dp_from=args.no_dp_from,
        model=args.model,
        seed=args.seed,
        workers=max(1, args.workers),
        out=out,
        report=report,
        runs_dir=args.runs_dir or str(Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"),
    )
