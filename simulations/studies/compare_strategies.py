"""Global-only vs local-only vs personalized, per client, with and without record-level DP.

    python -m simulations.studies.compare_strategies                       # the default comparison (docs/studies/comparison.md)
    python -m simulations.studies.compare_strategies --quick               # tiny smoke configuration
    python -m simulations.studies.compare_strategies --data my_clients/    # your own data: one <client_id>.jsonl per client

For every profile (hospital, phone; or "custom" with --data), every privacy level (`--epsilons`:
"none" = no DP, a number = record-level DP-SGD with that `target_epsilon` per client) and every
strategy (`--strategies`) this runs the real federation (`simulations.simulate.run_simulation`, Flower
on Ray, a fresh run folder per configuration), then on each client's held-out split:

* **global-only**: the final global adapter of the federation (fedsa's global is lora_A only, so with
  B at its zero init it *is* the base model). A client's global-only baseline is the best (lowest
  perplexity for that client) global adapter among the strategies of that configuration.
* **local-only**: no federation; the client trains its own LoRA adapter on its own train split for
  `rounds * local_epochs + finetune_epochs` epochs with the same σ, hence the same record-level ε,
  as a federated client (in-process, `simulations.studies.baselines.train_local_only`).
* **personalized** (per strategy): the federated result plus what the device keeps (fedsa: its own
  lora_B) is fine-tuned for `finetune_epochs` on the device, paid from the device's ledger of the
  federation (`client.personalize.personalize`; `finetune_locally` refuses past `target_epsilon`);
  the device then predicts with the mixture λ·federated + (1 − λ)·fine-tuned of the two models'
  next-token distributions (`client.interpolation`, λ = `--global-weight`, fixed, so no extra ε).
  The fine-tuned model alone is reported too, as an ablation.
* **without DP** (`client.selection`, `--validation-fraction`, default 0.2; 0 = the fixed protocol
  above): local-only and the fine-tuning both train up to `rounds * local_epochs + finetune_epochs`
  epochs on the train split minus a validation slice and keep their best epoch on that slice, and
  λ (unless `--global-weight` is given) is the grid value best on it. Under DP the selection would be
  an unaccounted use of the data, so DP runs keep the fixed epochs and λ = 0.5.

Reported per (profile, ε, strategy): the share of clients whose personalized perplexity is below both
their global-only and their local-only perplexity (goal ≥ 80 %); the personalization gain
`mean_c [min(global_c, local_c) − personalized_c]` (perplexity points) and at ε = 8 the fraction of
the non-private gain kept, gain(ε=8) / gain(no DP) (goal ≥ 80 %); every held-out perplexity also in
bits per byte (from each client's held-out token and byte counts, recorded in results.json), which
compares across tokenizers; and the bytes each strategy uploads per round (from metrics.json
`rounds[*].upload_bytes`). Writes `<out>/results.json`, PNG
plots in `<out>/` and a Markdown report (`docs/studies/comparison.md` for the default
`--out docs/studies/comparison`). The pieces live in `simulations.studies.comparison`; this module is the
command line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from fedpriv.config import DP_SCOPE_HELP, DP_SCOPES, DP_STEP_HELP, DP_STEP_SIZES
from simulations.studies.comparison.orchestration import run
from simulations.studies.comparison.settings import DEFAULT_OUT, DEFAULT_REPORT, Settings, settings_from_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m simulations.studies.compare_strategies",
        description="Per-client held-out perplexity of global-only, local-only and personalized LoRA, with and without "
        "record-level DP, and bytes uploaded per round per strategy.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = Settings()
    p.add_argument("--profiles", default=",".join(d.profiles), help="synthetic profiles (hospital,phone)")
    p.add_argument("--data", default="", metavar="DIR", help="your own data: one <client_id>.jsonl per client (replaces --profiles with one 'custom' profile)")
    p.add_argument("--epsilons", default="none,1,4,8", help="'none' = no DP; numbers = record-level target ε per client")
    p.add_argument("--strategies", default=",".join(d.strategies), help="federated strategies (fedavg, ffa, fedsa)")
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--num-clients", default="hospital=4,phone=8", help="N for every profile, or profile=N,...")
    p.add_argument("--records-per-client", default="160", help="synthetic records per client (N, or profile=N,...); --held-out of them are held out")
    p.add_argument("--held-out", type=float, default=d.eval_fraction, metavar="FRACTION", help="fraction of each client's records held out for evaluation")
    p.add_argument("--local-epochs", type=int, default=d.local_epochs)
    p.add_argument("--finetune-epochs", type=int, default=d.finetune_epochs)
    p.add_argument("--learning-rate", type=float, default=d.learning_rate)
    p.add_argument("--lora-rank", type=int, default=d.lora_rank)
    p.add_argument("--lora-alpha", type=float, default=d.lora_alpha)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--max-seq-len", type=int, default=d.max_seq_len)
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm)
    p.add_argument("--global-weight", type=float, default=d.global_weight, metavar="LAMBDA",
                   help="personalized = LAMBDA x federated model + (1 - LAMBDA) x fine-tuned model, mixed at the output (0..1; fixed, so it "
                        "spends no privacy). Default: 0.5 under DP (dp-scope all), else chosen on the validation slice")
    p.add_argument("--validation-fraction", type=float, default=d.validation_fraction, metavar="FRACTION",
                   help="without DP: this fraction of each train split picks the epochs (early stopping) of local-only and "
                        "of the fine-tuning, and λ; 0 = fixed epochs and λ as under DP")
    p.add_argument("--delta", type=float, default=d.delta)
    p.add_argument("--accountant", choices=("prv", "rdp"), default=d.accountant)
    p.add_argument("--dp-step-size", choices=DP_STEP_SIZES, default=d.dp_step_size,
                   help=DP_STEP_HELP)
    p.add_argument("--dp-scope", choices=DP_SCOPES, default=d.dp_scope, help=DP_SCOPE_HELP)
    p.add_argument("--dp-server-learning-rate", type=float, default=d.dp_server_learning_rate, metavar="ETA",
                   help="the server's step on the averaged update in the DP rows' federations (global += ETA x mean update); "
                        "the no-DP rows keep 1 (plain FedAvg)")
    p.add_argument("--no-dp-from", default="", metavar="RESULTS_JSON",
                   help="take the no-DP rows from this earlier results.json instead of rerunning them (after a change to DP runs only; "
                        "refused unless every setting a no-DP run depends on, and the clients, are the same)")
    p.add_argument("--model", default=d.model)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="processes for the device-side work (local-only, personalization), one torch thread each")
    p.add_argument("--out", default=None, help=f"results folder: results.json + plots (default {DEFAULT_OUT}; --quick: a folder under runs/)")
    p.add_argument("--report", default=None, help=f"Markdown report (default {DEFAULT_REPORT} with the default --out, else <out>/results.md)")
    p.add_argument("--runs-dir", default="", help="where the federations' run folders go (default runs/compare-<timestamp>)")
    p.add_argument("--quick", action="store_true", help="tiny smoke configuration: hospital, 2 clients, 1 round of 1 epoch, fedsa, ε none and 8, 20 records (explicit options win)")
    return p


def command_line(argv: Sequence[str]) -> str:
    """The shell command that runs this comparison with `argv` (recorded in results.json and the report)."""
    return "python -m simulations.studies.compare_strategies" + "".join(" " + shlex.quote(a) for a in argv)


def settings_from_argv(argv: Sequence[str]) -> Settings:
    """The Settings these command-line options define (SystemExit naming a bad one)."""
    argv = list(argv)
    return settings_from_args(build_parser().parse_args(argv), argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    run(settings_from_argv(argv), command_line(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
