"""Starting Flower's programs for a test and stopping every one of them, whatever happens.

Flower's programs start others in new sessions (the SuperExec, the ServerApp and each ClientApp
process; `flwr run` a detached local SuperLink), so a process group is not enough: `stop_all` kills
every descendant of what was started, and then every process whose command line or environment names
this test's own folder (they can only be ours), each by its pid.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from fedpriv.deploy.plan import Command

BIN = str(Path(sys.executable).parent)  # the environment's flower-superlink, flwr, fedpriv
ROOT = Path(__file__).resolve().parents[2]  # this checkout: `fedpriv` runs its code even if another one is installed


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PATH": os.pathsep.join([BIN, os.environ.get("PATH", "")]), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "RAY_USAGE_STATS_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    env.update(extra)
    return env


class Processes:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: Command, cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed when the process is reaped)
        process = subprocess.Popen(command.argv, env=environment(**command.env), cwd=cwd or self.root, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.started[name] = process
        return process

    def run(self, name: str, command: Command, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run to completion (killed after `timeout` s), output in logs/<name>.log and returned."""
        process = self.start(name, command, cwd)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(name)
        return subprocess.CompletedProcess(command.argv, process.returncode, self.log(name), "")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                         for p in sorted(self.logs.glob("*.log")))

    def stop(self, name: str) -> None:
        _kill({self.started[name].pid: self.started[name]})

    def stop_all(self) -> None:
        _kill({p.pid: p for p in self.started.values()})
        _kill({pid: None for pid in _naming(self.root)})


def _kill(roots: dict[int, subprocess.Popen | None]) -> None:
    """Terminate each root and all its descendants (SIGKILL after 5 s). Our own children are reaped by
    their Popen, so that their return code is the real one (psutil would reap them first, and Popen
    would then report 0)."""
    victims: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            parent = psutil.Process(pid)
            for process in [parent, *parent.children(recursive=True)]:
                victims[process.pid] = process
        except psutil.NoSuchProcess:
            continue
    for process in victims.values():
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    for popen in filter(None, roots.values()):
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    others = [p for pid, p in victims.items() if roots.get(pid) is None]
    _, alive = psutil.wait_procs(others, timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _naming(root: Path) -> set[int]:
    """Processes of this user whose command line or environment names `root` (e.g. its FLWR_HOME)."""
    mark, found = str(root), set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.pid == os.getpid():
                continue
            if any(mark in part for part in process.info["cmdline"] or []) or any(mark in value for value in process.environ().values()):
                found.add(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_for(condition, timeout: float, interval: float = 1.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
