"""`fedpriv deploy run`: `flwr run --stream`, then the run's final status decides the exit code.

Flower 1.41's `flwr run` exits 0 once the run was submitted, whatever happens to it afterwards (a
ServerApp that raises ends as `finished:failed`, exit code 700 in its log, and `flwr run` still
returns 0). Scripts and CI need the outcome, so this streams the run's log exactly as `flwr run
--stream` does, reads the run id it prints, and asks the SuperLink for the run's status (`flwr list
--run-id ID --format json`): 0 for `finished:completed`, 1 otherwise, with the status and its details.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from fedpriv.errors import FedprivError

STARTED = re.compile(r"Successfully started run (\d+)")
COMPLETED = "finished:completed"


class RunStatusUnknown(FedprivError):
    """The SuperLink did not report a final status for the run."""


class FlowerNotFound(FedprivError):
    """Flower's CLI is not installed where fedpriv runs."""


def run_status(run_id: int, superlink: str | None = None) -> tuple[str, str]:
    """(status, details) of a run as the SuperLink reports it, e.g. ("finished:failed", "...")."""
    argv = ["flwr", "list", *([superlink] if superlink else []), "--run-id", str(run_id), "--format", "json"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    try:
        runs = json.loads(done.stdout)["runs"]
        (run,) = [r for r in runs if str(r["run-id"]) == str(run_id)]
        return str(run["status"]), str(run.get("status-details", ""))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise RunStatusUnknown(f"`{' '.join(argv)}` gave no status for run {run_id} ({err}): {done.stdout or done.stderr}") from None


def final_status(run_id: int, superlink: str | None = None, timeout: float = 60.0, poll: float = 1.0) -> tuple[str, str]:
    """Wait (the log stream can end a moment before the SuperLink records the outcome) for `finished:*`."""
    deadline = time.monotonic() + timeout
    while True:
        status, details = run_status(run_id, superlink)
        if status.startswith("finished") or time.monotonic() > deadline:
            return status, details
        time.sleep(poll)


def run_and_check(app: str, superlink: str | None, flwr_options: Sequence[str], out: TextIO | None = None) -> int:
    """Run `flwr run APP [SUPERLINK] --stream FLWR_OPTIONS...`, echoing its output (to `out`, default
    stdout); the exit code: flwr's own if it failed, else 0 if the run completed and 1 if not."""
    out = out or sys.stdout
    argv = ["flwr", "run", app, *([superlink] if superlink else []), "--stream", *flwr_options]
    run_id = None
    try:
        flwr = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    except FileNotFoundError:
        raise FlowerNotFound("`flwr` (Flower's CLI) is not on PATH: run in fedpriv's environment") from None
    with flwr:
        assert flwr.stdout is not None
        for line in flwr.stdout:
            out.write(line)
            out.flush()
            if run_id is None and (match := STARTED.search(line)):
                run_id = int(match.group(1))
    if flwr.returncode != 0:
        return flwr.returncode
    if run_id is None:
        print("fedpriv deploy run: `flwr run` printed no run id; the run did not start", file=sys.stderr)
        return 1
    status, details = final_status(run_id, superlink)
    if status == COMPLETED:
        print(f"fedpriv deploy run: run {run_id} {status}", file=out)
        return 0
    print(f"fedpriv deploy run: run {run_id} ended {status}" + (f": {details}" if details and details != "N/A" else ""), file=sys.stderr)
    return 1
