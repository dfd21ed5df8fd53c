"""`fedpriv deploy run`: the exit code follows the run's final status, which `flwr run` ignores.

A stand-in `flwr` on PATH plays the Flower CLI's part (its output lines and `flwr list --format
json`), so each outcome can be produced; the real `flwr run` is exercised in test_flwr_run_simulation."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from fedpriv.cli import main

FAKE_FLWR = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_FLWR_CALLS"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    if args[0] == "run":
        print("Loading project configuration...")
        if os.environ.get("FAKE_RUN_ID"):
            print("Successfully started run " + os.environ["FAKE_RUN_ID"])
        print("INFO :      [ROUND 1/1]")
        sys.exit(int(os.environ.get("FAKE_RUN_EXIT", "0")))
    if args[0] == "list":
        status, details = os.environ["FAKE_STATUS"].split("|")
        print(json.dumps({{"success": True, "runs": [{{"run-id": os.environ["FAKE_RUN_ID"], "status": status, "status-details": details}}]}}))
""")


@pytest.fixture()
def fake_flwr(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "flwr"
    script.write_text(FAKE_FLWR.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_FLWR_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_RUN_ID", "4242")
    return lambda: [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_completed_run_exits_0_and_the_flags_reach_flwr(fake_flwr, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_STATUS", "finished:completed|N/A")
    assert main(["deploy", "run", "app", "fedpriv", "--run-config", "rounds=1", "--federation-config", "num-supernodes=4"]) == 0
    out = capsys.readouterr().out
    assert "Successfully started run 4242" in out and "[ROUND 1/1]" in out and "run 4242 finished:completed" in out
    run, status = fake_flwr()
    assert run == ["run", "app", "fedpriv", "--stream", "--run-config", "rounds=1", "--federation-config", "num-supernodes=4"]
    assert status == ["list", "fedpriv", "--run-id", "4242", "--format", "json"]


@pytest.mark.parametrize("status", ["finished:failed|Simulation failed with exception: model: model path not found: /nope",
                                    "finished:stopped|N/A"])
def test_a_run_that_did_not_complete_exits_1_with_its_status(fake_flwr, monkeypatch, capsys, status):
    monkeypatch.setenv("FAKE_STATUS", status)
    assert main(["deploy", "run"]) == 1
    err = capsys.readouterr().err
    assert f"run 4242 ended {status.split('|')[0]}" in err
    if "model path" in status:
        assert "model path not found: /nope" in err


def test_flwr_failing_to_start_the_run_keeps_its_exit_code(fake_flwr, monkeypatch):
    monkeypatch.setenv("FAKE_RUN_EXIT", "3")
    assert main(["deploy", "run"]) == 3
    assert [call[0] for call in fake_flwr()] == ["run"]  # nothing to ask the SuperLink about


def test_no_run_id_is_a_failure(fake_flwr, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_RUN_ID", "")
    assert main(["deploy", "run"]) == 1
    assert "printed no run id" in capsys.readouterr().err


def test_without_flower_on_path_the_error_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["deploy", "run"]) == 2
    assert "`flwr` (Flower's CLI) is not on PATH" in capsys.readouterr().err
