"""CLI: `fedpriv simulate` and `fedpriv data`."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedpriv.config import ACCOUNTANTS, DEFAULT_MODEL, DP_MODES, DP_SCOPE_COVERS, DP_SCOPE_HELP, DP_SCOPES, DP_STEP_HELP, DP_STEP_SIZES, GRAD_SAMPLE_MODES, NOISE_CHOICES, PROFILES, STRATEGIES, RunConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = RunConfig()
    sim = subparsers.add_parser(
        "simulate",
        help="run a federated DP-LoRA personalization on this machine (Flower simulation on Ray)",
        description="Run a simulated federation and write metrics.json, report.md (with a plot) and the adapters to a run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = sim.add_argument_group("data")
    data.add_argument("--profile", choices=PROFILES, default=defaults.profile, help="synthetic federation profile")
    data.add_argument("--data", dest="data_dir", metavar="DIR", default="", help="your own data: one <client_id>.jsonl per client, {\"text\": ...} per line (replaces the synthetic data)")
    data.add_argument("--num-clients", type=int, default=None, help="number of clients (default: 4 hospital, 20 phone, or every file in --data)")
    data.add_argument("--records-per-client", type=int, default=defaults.records_per_client, help="synthetic records per client")
    fed = sim.add_argument_group("federation")
    fed.add_argument("--rounds", type=int, default=defaults.rounds)
    fed.add_argument("--clients-per-round", type=int, default=None,
                     help="clients sampled for training each round (default: all for hospital; for phone a quarter, at least 5)")
    fed.add_argument("--min-train-nodes", type=int, default=None,
                     help="valid train replies a round needs to update the global adapter (default: all sampled for hospital, "
                          "three quarters of the sample for phone); with fewer the round keeps the previous adapter")
    fed.add_argument("--min-evaluate-nodes", type=int, default=None,
                     help="evaluate replies a round needs for its aggregate evaluation (default: all for hospital, three quarters for phone)")
    fed.add_argument("--round-timeout", type=float, default=None,
                     help="seconds the server waits for one train or evaluate step's replies (default: 3600 hospital, 600 phone)")
    fed.add_argument("--model", default=defaults.model, help=f"'{DEFAULT_MODEL}' (the shipped small Llama), an installed model (`fedpriv model list`, e.g. smollm2-135m), "
                          "a local model directory, or a cached Hugging Face model id")
    fed.add_argument("--lora-rank", type=int, default=defaults.lora_rank)
    fed.add_argument("--lora-targets", default=defaults.lora_targets, help="comma-separated module names to adapt, or 'auto' (the architecture's usual ones: q_proj,v_proj for Llama)")
    fed.add_argument("--local-epochs", type=int, default=defaults.local_epochs)
    fed.add_argument("--finetune-epochs", type=int, default=defaults.finetune_epochs,
                     help="epochs of on-device fine-tuning to reserve for `fedpriv personalize` after the run (σ is calibrated to cover them)")
    fed.add_argument("--validation-fraction", type=float, default=defaults.validation_fraction,
                     help="without record-level DP: fraction of each device's train split on which `fedpriv personalize` picks "
                          "its fine-tuning epochs and mixture weight (0 = fixed)")
    fed.add_argument("--batch-size", type=int, default=defaults.batch_size, help="expected (Poisson) batch size")
    fed.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    fed.add_argument("--max-seq-len", type=int, default=defaults.max_seq_len)
    agg = sim.add_argument_group("aggregation (see docs/strategies.md)")
    agg.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy, help="auto: ffa under client-level DP, else fedavg")
    agg.add_argument("--client-ranks", default="", help="hetlora: per-client LoRA ranks, e.g. 'phone-00=4,phone-01=16'")
    agg.add_argument("--hetlora-method", choices=("zero_pad", "svd"), default=defaults.hetlora_method)
    agg.add_argument("--norm-bound", type=float, default=0.0, help="bound each client update's L2 norm (0 = off)")
    agg.add_argument("--trim-beta", type=float, default=0.0, help="coordinate-wise trimmed mean, fraction trimmed per side (0 = off; plaintext only)")
    agg.add_argument("--secure-aggregation", action=argparse.BooleanOptionalAction, default=None,
                     help="SecAgg+: the server sees only the sum of the updates, never one device's (docs/secure-aggregation.md); "
                          "default: on for phone, off for hospital")
    agg.add_argument("--secure-aggregation-range", type=float, default=defaults.secure_aggregation_range,
                     help="secure aggregation: each coordinate of an update is clipped to ±this before quantization "
                          "(0 = the L2 clip: client clipping norm or norm bound, else 1)")
    agg.add_argument("--server-learning-rate", type=float, default=defaults.server_learning_rate,
                     help="the server's step η on the averaged client update: global += η·mean update (1 = FedAvg)")
    dp = sim.add_argument_group("differential privacy")
    dp.add_argument("--dp", choices=DP_MODES, default=defaults.dp, help="record (DP-SGD on each device), client (DP-FedAvg at the server), both, none; auto: record for hospital, client for phone")
    dp.add_argument("--no-dp", action="store_true", help="same as --dp none (no ε is reported)")
    dp.add_argument("--client-noise-multiplier", type=float, default=defaults.client_noise_multiplier, help="client-level σ (ignored with --client-target-epsilon)")
    dp.add_argument("--client-clipping-norm", type=float, default=defaults.client_clipping_norm, help="client-level clip S of each update")
    dp.add_argument("--client-target-epsilon", type=float, default=None, help="calibrate client-level σ to this ε over all rounds")
    dp.add_argument("--noise-multiplier", type=float, default=defaults.noise_multiplier, help="σ (ignored when --target-epsilon is set)")
    dp.add_argument("--target-epsilon", type=float, default=None, help="calibrate σ so that all rounds spend this ε; also each client's budget")
    dp.add_argument("--delta", type=float, default=defaults.delta)
    dp.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm, help="per-record clipping norm C")
    dp.add_argument("--accountant", choices=ACCOUNTANTS, default=defaults.accountant)
    dp.add_argument("--dp-step-size", choices=DP_STEP_SIZES, default=defaults.dp_step_size,
                    help=DP_STEP_HELP)
    dp.add_argument("--dp-scope", choices=DP_SCOPES, default=defaults.dp_scope, help=DP_SCOPE_HELP)
    dp.add_argument("--grad-sample-mode", choices=GRAD_SAMPLE_MODES, default=defaults.grad_sample_mode, help="Opacus per-sample gradient mode")
    dp.add_argument("--noise", choices=NOISE_CHOICES, default=defaults.noise,
                    help="where DP noise comes from: seeded (reproducible from --seed; auto in a simulation) or secure (a CSPRNG keyed from the OS)")
    audit = sim.add_argument_group("audit (fedpriv audit RUN_DIR)")
    audit.add_argument("--canaries", type=int, default=defaults.canaries, metavar="M",
                       help="write M one-run canaries (each in training with probability 1/2) and secret canaries into the devices' data")
    run = sim.add_argument_group("run")
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--out", default="", help="run directory (default: runs/<timestamp>-<profile>); must not exist or be empty")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue an interrupted run at the round after its last checkpoint, with the settings it was started with")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--verbose", action="store_true", help="show Flower's and Ray's logs")
    sim.set_defaults(func=_simulate)

    gen = subparsers.add_parser(
        "data",
        help="write a synthetic federation (one <client_id>.jsonl per client) to a folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    gen.add_argument("--profile", choices=PROFILES, default=defaults.profile)
    gen.add_argument("--num-clients", type=int, default=None)
    gen.add_argument("--records-per-client", type=int, default=defaults.records_per_client)
    gen.add_argument("--seed", type=int, default=defaults.seed)
    gen.add_argument("--out", required=True, help="folder to write")
    gen.set_defaults(func=_write_data)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        profile=args.profile,
        data_dir=args.data_dir,
        num_clients=args.num_clients,
        records_per_client=args.records_per_client,
        rounds=args.rounds,
        clients_per_round=args.clients_per_round,
        min_train_nodes=args.min_train_nodes,
        min_evaluate_nodes=args.min_evaluate_nodes,
        round_timeout=args.round_timeout,
        model=args.model,
        lora_rank=args.lora_rank,
        lora_targets=args.lora_targets,
        local_epochs=args.local_epochs,
        finetune_epochs=args.finetune_epochs,
        validation_fraction=args.validation_fraction,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_seq_len=args.max_seq_len,
        strategy=args.strategy,
        client_ranks=args.client_ranks,
        hetlora_method=args.hetlora_method,
        norm_bound=args.norm_bound,
        trim_beta=args.trim_beta,
        secure_aggregation=args.secure_aggregation,
        secure_aggregation_range=args.secure_aggregation_range,
        server_learning_rate=args.server_learning_rate,
        dp="none" if args.no_dp else args.dp,
        client_noise_multiplier=args.client_noise_multiplier,
        client_clipping_norm=args.client_clipping_norm,
        client_target_epsilon=args.client_target_epsilon if args.client_target_epsilon is not None else 0.0,
        noise_multiplier=args.noise_multiplier,
        target_epsilon=args.target_epsilon if args.target_epsilon is not None else 0.0,
        delta=args.delta,
        max_grad_norm=args.max_grad_norm,
        accountant=args.accountant,
        grad_sample_mode=args.grad_sample_mode,
        dp_step_size=args.dp_step_size,
        dp_scope=args.dp_scope,
        noise=args.noise,
        canaries=args.canaries,
        seed=args.seed,
        out=args.out,
    )


def _simulate(args: argparse.Namespace) -> int:
    from fedpriv.errors import ConfigError
    from fedpriv.modeling import resolve_model
    from server.run_record import load_metrics
    from simulations.simulate import run_simulation

    config = config_from_args(args)
    if args.resume is not None:
        from simulations.simulate import resume_config

        changed = sorted(k for k, v in config.as_dict().items() if v != getattr(RunConfig(), k))
        if changed:
            flags = ", ".join("--" + k.replace("_", "-") for k in changed)
            raise ConfigError("resume", f"a resumed run keeps the settings it was started with; drop {flags}")
        out = run_simulation(resume_config(Path(args.resume)), show_progress=not args.no_progress, verbose=args.verbose)
        print_summary(out, load_metrics(out / "metrics.json"))
        return 0
    if args.target_epsilon is not None and args.target_epsilon <= 0:
        raise ConfigError("target-epsilon", f"must be greater than zero, got {args.target_epsilon}")
    if args.client_target_epsilon is not None and args.client_target_epsilon <= 0:
        raise ConfigError("client-target-epsilon", f"must be greater than zero, got {args.client_target_epsilon}")
    if args.no_dp and args.dp not in ("auto", "none"):
        raise ConfigError("dp", f"--no-dp contradicts --dp {args.dp}")
    config.validated()
    resolve_model(config.model)  # a missing model path fails here, before any data is written
    out = run_simulation(config, show_progress=not args.no_progress, verbose=args.verbose)
    print_summary(out, load_metrics(out / "metrics.json"))
    return 0


def print_summary(out: Path, metrics: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from fedpriv.device_log import round_with_logs

    last = metrics["rounds"][-1] if metrics["rounds"] else {"round": 0, "clients": []}
    privacy = metrics["privacy"]["record_level"]
    state_dir = metrics["config"].get("state_dir")
    if state_dir:  # under DP the held-out metrics stay in the devices' logs, which a simulation has at hand
        clients = round_with_logs(last["round"], {e["client_id"]: e for e in last["clients"]}, Path(state_dir))
        last = {**last, "clients": [clients[c] for c in sorted(clients)]}
    scope = metrics["config"].get("dp_scope", "all")
    table = Table(title=f"round {last['round']}: held-out perplexity, bits per byte and record-level ε "
                        f"(DP mode {metrics['privacy']['mode']}; ε covers {DP_SCOPE_COVERS[scope]}: dp-scope {scope})")
    for column in ("client", "perplexity", "bits/byte", "ε", "δ", "steps"):
        table.add_column(column)
    for entry in last["clients"]:
        p = privacy.get(entry["client_id"], {})
        ppl, bpb = entry.get("eval_perplexity"), entry.get("eval_bits_per_byte")
        table.add_row(
            escape(entry["client_id"]),  # a device's id, not markup
            "–" if ppl is None else f"{ppl:.2f}",
            "–" if bpb is None else f"{bpb:.3f}",
            f"{float(p['epsilon']):.3f}" if p else "–",
            f"{p['delta']:g}" if p else "–",
            str(p.get("steps", "–")),
        )
    console = Console()
    console.print(table)
    client_level = metrics["privacy"].get("client_level")
    if client_level:
        console.print(f"client-level ε = {client_level['epsilon']:.3f} at δ = {client_level['delta']:g} after {client_level['rounds']} rounds ({client_level['sampling']} sampling)")
    if metrics["privacy"].get("secure_aggregation"):
        secure = [r["secure_aggregation"] for r in metrics["rounds"] if "secure_aggregation" in r]
        done = sum(not r["aborted"] for r in secure)
        console.print(f"secure aggregation: the server saw only the sum of the updates ({done} of {len(secure)} rounds aggregated"
                      f"{', the others aborted: see report.md' if done < len(secure) else ''})")
    if metrics["privacy"]["mode"] == "none":
        console.print("[bold red]DP disabled: no formal privacy guarantee[/]")
    console.print(f"run directory: {out}  (report: {out / 'report.md'})")


def _write_data(args: argparse.Namespace) -> int:
    from fedpriv.errors import ConfigError
    from simulations.synthetic import generate_federation, write_federation

    if args.num_clients is not None and args.num_clients < 1:
        raise ConfigError("num-clients", f"must be greater than zero, got {args.num_clients}")
    federation = generate_federation(args.profile, args.num_clients, args.records_per_client, args.seed)
    paths = write_federation(Path(args.out), federation)
    print(f"wrote {len(paths)} client files to {args.out}")
    return 0
