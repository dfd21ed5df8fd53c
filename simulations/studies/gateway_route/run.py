"""Running the study: the stand-in server, one prompt through the local model, the router and the
gateway's cloud route."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from client.gateway.gateway import AskResult, Gateway
from client.gateway.local_model import LocalAnswer, LocalModel
from client.gateway.router import Route, Router
from simulations.studies.gateway_route.scoring import Row

REPO = Path(__file__).resolve().parents[3]
PROMPTS = Path(__file__).with_name("prompts.jsonl")


@dataclass(frozen=True)
class Prompt:
    id: str
    category: str
    text: str
    keywords: tuple[str, ...]


def load_prompts(path: Path = PROMPTS) -> list[Prompt]:
    prompts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            prompts.append(Prompt(item["id"], item["category"], item["text"], tuple(item["keywords"])))
    if len({p.id for p in prompts}) != len(prompts):
        raise ValueError(f"{path}: duplicate prompt ids")
    return prompts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def standin_server(model: str, port: int, log_path: Path, start_timeout: float = 600.0) -> Iterator[str]:
    """`fedpriv gateway serve --model MODEL` in its own process group, from this checkout; yields its
    base URL once /health answers and always stops it (SIGTERM, then SIGKILL)."""
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "PYTHONPATH": str(REPO)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedpriv.cli", "gateway", "serve", "--model", model, "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"fedpriv gateway serve exited with {proc.returncode}; see {log_path}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fedpriv gateway serve did not answer /health within {start_timeout:.0f} s; see {log_path}")
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


@dataclass(frozen=True)
class Outcome:
    row: Row
    local: LocalAnswer
    cloud: AskResult
    auto_route: str  # what `Gateway.ask` under `auto` returns for this prompt
    auto_answer: str | None
    local_seconds: float
    cloud_seconds: float


def route_one(prompt: Prompt, local_model: LocalModel, router: Router, cloud_gateway: Gateway) -> Outcome:
    """The local answer and the router's `auto` decision on it (`Router.after_local`, the call
    `Gateway.ask` makes), and the stand-in's answer through the gateway's cloud route. A prompt the
    router does not keep gets, under `auto`, exactly the cloud route's answer (sanitize, check, log,
    send, restore; the stand-in decodes greedily), so `auto` needs no third model call."""
    started = time.monotonic()
    local = local_model.answer(prompt.text)
    local_seconds = time.monotonic() - started
    started = time.monotonic()
    cloud = cloud_gateway.ask(prompt.text)
    cloud_seconds = time.monotonic() - started
    decision = router.after_local(local)
    if decision is not None and decision.route is Route.LOCAL:
        auto_route, auto_answer = Route.LOCAL.value, local.text
    else:
        auto_route, auto_answer = cloud.route, cloud.answer
    row = Row(
        id=prompt.id,
        category=prompt.category,
        confidence=local.confidence,
        local_answer=local.text,
        cloud_answer=cloud.answer,
        cloud_route=cloud.route,
        keywords=prompt.keywords,
    )
    return Outcome(row, local, cloud, auto_route, auto_answer, local_seconds, cloud_seconds)
