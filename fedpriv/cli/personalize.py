"""`fedpriv personalize RUN_DIR` — personalize every device of a finished simulated run;
`fedpriv personalize --device STATE_DIR --data FILE` — personalize one real device after the federation.

Each device of the run (its data split, its privacy ledger and, for fedsa, its private lora_B, all
under the run's `devices/<client-id>/`) fine-tunes the final global adapter on its own train split
for the run's `finetune_epochs`, paying from its ledger, and predicts with the mixture of the
federated and the fine-tuned model (`client.interpolation`). The fine-tuned adapter is written to
the device's own folder (`personalized_adapter.safetensors`); nothing is sent anywhere. Without
record-level DP the device instead picks the fine-tuning length (up to the run's total local epochs),
the private model (the fine-tuned adapter or one it trains from scratch, whichever is better) and λ
on a validation slice of its train split (`client.selection`; the run's validation-fraction,
0 = fixed); the adapter written is then that private model. With a
record-level budget (`--target-epsilon E`) the run must have reserved the fine-tuning in it
(`fedpriv simulate --finetune-epochs N --target-epsilon E`), otherwise the devices refuse.

A real device (a SuperNode with node config `state-dir`) keeps the last global adapter it received
(sealed with its device key) and the run config in `STATE_DIR/<client-id>/`; `--device STATE_DIR
--data FILE` fine-tunes from there in the same way, paying from that device's own ledger
(`client.personalize.personalize_device`), and writes the fine-tuned adapter and
personalization.json to that folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fedpriv.errors import ConfigError, DataError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "personalize",
        help="fine-tune the final global adapter on a simulated run's devices (RUN_DIR) or on one real device (--device)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    cmd.add_argument("run_dir", metavar="RUN_DIR", nargs="?", default=None, help="a run directory written by `fedpriv simulate`")
    cmd.add_argument("--clients", default="", help="RUN_DIR: comma-separated client ids (default: every device of the run)")
    cmd.add_argument("--device", metavar="STATE_DIR", default=None,
                     help="personalize a real device instead: its SuperNode's node config state-dir")
    cmd.add_argument("--data", metavar="FILE", default=None, help="--device: the device's data file (its node config data-path)")
    cmd.add_argument("--client-id", default=None,
                     help="--device: the device's folder in STATE_DIR; if not given, the only one holding a global adapter")
    cmd.add_argument("--device-key", metavar="FILE", default=None,
                     help="--device: the device key its sealed files were written with (its node config device-key; "
                          "default: device.key in the device's folder)")
    cmd.add_argument("--finetune-epochs", type=int, default=None, help="override the run's finetune-epochs (under DP the ledger still caps the budget)")
    cmd.add_argument("--global-weight", type=float, default=None, metavar="LAMBDA",
                     help="personalized = LAMBDA x federated + (1 - LAMBDA) x fine-tuned model; fixed, it spends no privacy "
                          "(default: client.interpolation.DEFAULT_GLOBAL_WEIGHT, 0.5, under record-level DP, else chosen on "
                          "the validation slice; not imported here: it pulls in torch, and every fedpriv command builds this parser)")
    cmd.set_defaults(func=_personalize)


def _personalize(args: argparse.Namespace) -> int:
    _check_target(args)
    from client.personalize import RESULT_FILE, personalize_device
    from simulations.personalize_run import personalize_run

    try:
        if args.device is not None:
            summary = personalize_device(Path(args.device), Path(args.data), args.client_id, args.finetune_epochs, args.global_weight,
                                         Path(args.device_key) if args.device_key else None)
            (client_id,) = summary["clients"]
            result_path = Path(args.device) / client_id / RESULT_FILE
        else:
            clients = [c.strip() for c in args.clients.split(",") if c.strip()] or None
            summary = personalize_run(Path(args.run_dir), clients, args.finetune_epochs, args.global_weight)
            result_path = Path(args.run_dir) / RESULT_FILE
    except FileNotFoundError as err:  # a file the run or the device should hold is gone
        raise DataError(str(err)) from err
    _print(summary, result_path)
    return 0


def _check_target(args: argparse.Namespace) -> None:
    """Exactly one of RUN_DIR (a simulated run) and --device (a real device), with its own options."""
    if (args.run_dir is None) == (args.device is None):
        raise ConfigError("RUN_DIR / --device", "give exactly one: RUN_DIR (a simulated run) or --device STATE_DIR --data FILE (a real device)")
    if args.device is not None:
        if not args.data:
            raise ConfigError("--data", "--device needs the device's data file: --data FILE")
        if args.clients:
            raise ConfigError("--clients", "selects devices of a simulated run (RUN_DIR); with --device use --client-id")
    else:
        for flag, value in (("--data", args.data), ("--client-id", args.client_id), ("--device-key", args.device_key)):
            if value:
                raise ConfigError(flag, "only applies with --device STATE_DIR")


def _print(summary: dict[str, Any], result_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from fedpriv.config import DP_SCOPE_COVERS

    table = Table(title=f"Held-out perplexity after personalization ({summary['strategy']})")
    table.add_column("client", no_wrap=True, min_width=max(map(len, summary["clients"])))  # ids stay whole on a narrow terminal
    for column in ("federated", "fine-tuned", "epochs", "private model", "λ", "personalized", "ε"):
        table.add_column(column, justify="right")
    for client_id, r in summary["clients"].items():
        eps = "—" if r["epsilon"] is None else f"{r['epsilon']:.3f}"
        private = r.get("private_model", "finetuned").replace("_", " ")  # optional field; absent = fine-tuned
        table.add_row(client_id, f"{r['federated_perplexity']:.2f}", f"{r['finetuned_perplexity']:.2f}", str(r["finetune_epochs"]),
                      private, f"{r['global_weight']:g}", f"{r['personalized_perplexity']:.2f}", eps)
    console = Console()
    console.print(table)
    if summary["delta"] is None:
        console.print("record-level DP off: no formal privacy guarantee for the fine-tuning")
    elif summary.get("dp_scope"):
        scope = summary["dp_scope"]
        console.print(f"ε (record level, δ={summary['delta']:g}) covers {DP_SCOPE_COVERS[scope]} (dp-scope {scope})")
    if any(r.get("selected_on_validation") for r in summary["clients"].values()):
        console.print("epochs, the private model (fine-tuned or trained from scratch) and λ chosen on a validation slice "
                      "of each device's train split (held-out split untouched)")
    origin = summary.get("global_adapter")
    if origin is not None and origin["rounds_aggregated"] < origin["rounds"]:
        console.print(f"note: the device's last global adapter holds {origin['rounds_aggregated']} of the run's "
                      f"{origin['rounds']} rounds (it did not receive the final one)")
    console.print(f"private adapters stay in each device's folder; results: {result_path}")

