"""`fedpriv ask` and `fedpriv gateway {serve,verify}`: thin parsers over `client.gateway`.

    fedpriv ask "prompt"                                   # one prompt, answer on stdout
    fedpriv ask --input IN.jsonl --output OUT.jsonl        # {"id", "text"} -> {"id", "route", "answer", "reason", ...}
    fedpriv gateway serve [--model NAME|PATH] [--port 8765] # offline OpenAI-compatible "cloud" on 127.0.0.1
    fedpriv gateway verify [--log PATH] [--public-key PATH]

Exit codes: 0 answered; 1 refused (single prompt) or at least one line not answered (batch);
2 a user-facing error (bad prompt, cloud unreachable, ...), printed on one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedpriv.errors import FedprivError

ENV_CLOUD_URL = "FEDPRIV_CLOUD_URL"
ENV_CLOUD_MODEL = "FEDPRIV_CLOUD_MODEL"
ENV_STATE_DIR = "FEDPRIV_GATEWAY_DIR"
DEFAULT_SERVE_PORT = 8765


def _defaults():
    # Imported lazily so `fedpriv --help` stays fast (the gateway modules import httpx/cryptography).
    from client.gateway import gateway as gw

    return gw


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    ask = subparsers.add_parser(
        "ask",
        help="ask a question through the privacy gateway (local model or sanitized cloud prompt)",
        description=(
            "Answer a prompt with the on-device model, or send only its sanitized form to an OpenAI-compatible "
            "cloud endpoint and restore the answer on the device. Every request that leaves the device is "
            "appended to a signed, hash-chained log first."
        ),
    )
    ask.add_argument("prompt", nargs="?", help="the prompt (or use --input)")
    ask.add_argument("--input", metavar="IN.jsonl", help='batch mode: one {"id": ..., "text": ...} per line ("-" = stdin)')
    ask.add_argument("--output", metavar="OUT.jsonl", help='batch mode: one {"id", "route", "answer", "reason"} per line ("-" = stdout)')
    ask.add_argument("--route", choices=("local", "cloud", "auto"), default="auto", help="routing policy (default: auto)")
    ask.add_argument(
        "--cloud-url",
        default=os.environ.get(ENV_CLOUD_URL, "http://127.0.0.1:8765/v1"),
        help=f"OpenAI-compatible base URL (default: ${ENV_CLOUD_URL} or http://127.0.0.1:8765/v1, `fedpriv gateway serve`)",
    )
    ask.add_argument(
        "--cloud-model",
        default=os.environ.get(ENV_CLOUD_MODEL) or None,
        help=f"model name sent to the cloud (default: ${ENV_CLOUD_MODEL}; none = the server's own model)",
    )
    ask.add_argument(
        "--state-dir",
        default=os.environ.get(ENV_STATE_DIR, "~/.fedpriv/gateway"),
        help=f"gateway state: device key, vault, outgoing log (default: ${ENV_STATE_DIR} or ~/.fedpriv/gateway)",
    )
    ask.add_argument("--timeout", type=_positive_float, default=60.0, help="deadline in seconds for each cloud request attempt as a whole, not per read (default: 60)")
    ask.add_argument("--max-retries", type=_non_negative_int, default=2, help="retries on 5xx/timeout/connection errors (default: 2)")
    ask.add_argument("--local-model", default="default",
                     help='on-device model: "default", an installed model (`fedpriv model list`), a directory or a cached HF id')
    ask.add_argument("--local-max-tokens", type=_positive_int, default=64,
                     help="longest local answer, in tokens; auto's confidence is measured over it (default: 64)")
    ask.add_argument("--min-confidence", type=_fraction, default=0.5,
                     help="auto: answer locally when the local answer's geometric-mean token probability is at least this (default: 0.5)")
    ask.add_argument("--max-residual-risk", type=_fraction, default=0.2, help="refuse to send above this residual risk (default: 0.2)")
    ask.add_argument("--max-prompt-chars", type=_positive_int, default=8000, help="longest accepted prompt (default: 8000)")
    ask.add_argument("--max-tokens", type=_positive_int, default=256, help="max tokens of the cloud answer (default: 256)")
    ask.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ask.add_argument("--show-sent", action="store_true", help="also print the sanitized prompt that was sent")
    ask.set_defaults(func=run_ask)

    gateway = subparsers.add_parser("gateway", help="privacy gateway tools: local OpenAI-compatible server, log verification")
    sub = gateway.add_subparsers(dest="gateway_command", metavar="ACTION")
    sub.required = True

    serve = sub.add_parser(
        "serve",
        help="serve a local model as an OpenAI-compatible endpoint on 127.0.0.1 (offline `transformers serve`)",
    )
    serve.add_argument("--model", default="default",
                       help='"default" (fedpriv/assets/default-model), an installed model (`fedpriv model list`), a directory or a cached HF id')
    serve.add_argument("--port", type=_port, default=DEFAULT_SERVE_PORT, help=f"port on 127.0.0.1 (default: {DEFAULT_SERVE_PORT})")
    serve.set_defaults(func=run_serve)

    verify = sub.add_parser("verify", help="verify the outgoing log: signatures, hash chain, no deleted/reordered entries")
    verify.add_argument("--state-dir", default=os.environ.get(ENV_STATE_DIR, "~/.fedpriv/gateway"))
    verify.add_argument("--log", help="log file (default: STATE_DIR/outgoing.jsonl)")
    verify.add_argument("--public-key", help="device public key, PEM (default: STATE_DIR/device_ed25519.pub)")
    verify.add_argument("--head", help="head file (default: LOG.head)")
    verify.set_defaults(func=run_verify)


# ---- argument types ------------------------------------------------------------------------------


def _checked(text: str, kind: type[int] | type[float], ok: Callable[[float], bool], requirement: str) -> Any:
    """``text`` parsed as ``kind`` and accepted by ``ok``; otherwise an argparse error saying which."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
    if not ok(value):  # NaN fails every comparison, so it is refused too
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
    return value


def _positive_float(text: str) -> float:
    return _checked(text, float, lambda v: v > 0, "> 0")


def _positive_int(text: str) -> int:
    return _checked(text, int, lambda v: v > 0, "> 0")


def _non_negative_int(text: str) -> int:
    return _checked(text, int, lambda v: v >= 0, ">= 0")


def _fraction(text: str) -> float:
    return _checked(text, float, lambda v: 0.0 <= v <= 1.0, "between 0 and 1")


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


# ---- ask -----------------------------------------------------------------------------------------


def build_gateway(args: argparse.Namespace, **overrides: Any):
    gw = _defaults()
    options = gw.GatewayOptions(
        state_dir=args.state_dir,
        route=args.route,
        cloud_url=args.cloud_url,
        cloud_model=args.cloud_model,
        timeout=args.timeout,
        max_retries=args.max_retries,
        local_model=args.local_model,
        max_prompt_chars=args.max_prompt_chars,
        max_residual_risk=args.max_residual_risk,
        min_confidence=args.min_confidence,
        max_tokens=args.max_tokens,
        local_max_new_tokens=args.local_max_tokens,
    )
    return gw.Gateway.from_options(options, **overrides)


def run_ask(args: argparse.Namespace) -> int:
    if args.input is None and args.output is not None:
        raise FedprivError("--output needs --input")
    if args.input is not None:
        if args.prompt is not None:
            raise FedprivError("give either a prompt or --input, not both")
        if args.output is None:
            raise FedprivError("--input needs --output")
        return _run_batch(args)
    if args.prompt is None:
        raise FedprivError('give a prompt (fedpriv ask "...") or --input IN.jsonl --output OUT.jsonl')

    gw = _defaults()
    gw.validate_prompt(args.prompt, args.max_prompt_chars)  # before loading anything
    _quiet_transformers()
    _warn_insecure(args)
    gateway = build_gateway(args)
    result = gateway.ask(args.prompt)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    elif result.ok:
        print(f"[route: {result.route}] {result.reason}", file=sys.stderr)
        if args.show_sent and result.sent is not None:
            print(f"[sent] {result.sent}", file=sys.stderr)
        print(result.answer)
    else:
        print(f"fedpriv ask: refused: {result.reason}", file=sys.stderr)
    return 0 if result.ok else 1


def _quiet_transformers() -> None:
    """No "Loading weights" progress bars in the middle of the answer."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _warn_insecure(args: argparse.Namespace) -> None:
    if args.route == "local":
        return
    from client.gateway.cloud import is_loopback_url

    if args.cloud_url.strip().lower().startswith("http://") and not is_loopback_url(args.cloud_url):
        print(
            f"fedpriv ask: warning: {args.cloud_url} is plain http to another machine; "
            "the sanitized prompt (and any API key) travel unencrypted",
            file=sys.stderr,
        )


def _run_batch(args: argparse.Namespace) -> int:
    from client.gateway.batch import ask_lines, open_input, open_output

    _quiet_transformers()
    _warn_insecure(args)
    gateway = build_gateway(args)
    name = "<stdin>" if args.input == "-" else args.input

    def report(lineno: int, kind: str, message: str) -> None:
        where = f"{name}:{lineno}"
        print(f"fedpriv ask: error: {where}: {message}" if kind == "error" else f"fedpriv ask: {where}: {kind}: {message}", file=sys.stderr)

    with open_input(args.input) as fin, open_output(args.output, args.input) as fout:
        counts = ask_lines(fin, fout, gateway, report)
    print(f"fedpriv ask: {counts}", file=sys.stderr)
    return 1 if counts.failed else 0


# ---- gateway serve -------------------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> int:
    from client.gateway.local_model import offline_by_default, resolve_local_model

    offline_by_default()
    model = resolve_local_model(args.model, key="--model")
    _check_port_free(args.port)
    try:
        from transformers.cli.serve import Serve
    except ImportError as err:
        raise FedprivError(f"`transformers serve` is not available ({err}); install transformers[serving]") from None
    url = f"http://127.0.0.1:{args.port}/v1"
    print(f"fedpriv gateway serve: loading {model} (offline) ...", file=sys.stderr, flush=True)
    print(f"fedpriv gateway serve: OpenAI-compatible endpoint at {url} (Ctrl+C to stop)", file=sys.stderr, flush=True)
    print(f'fedpriv gateway serve: try  fedpriv ask --route cloud --cloud-url {url} "..."', file=sys.stderr, flush=True)
    # `transformers serve` itself, in-process: pinned to this one model (requests naming another
    # model get HTTP 400), bound to loopback only. Blocks until Ctrl+C / SIGTERM.
    Serve(force_model=model, host="127.0.0.1", port=args.port, device="cpu", log_level="warning")
    return 0


def _check_port_free(port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise FedprivError(f"port {port} on 127.0.0.1 is not free ({err.strerror or err}); pass --port") from None


# ---- gateway verify ------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    from client.gateway.keys import PUBLIC_KEY_NAME, load_public_key
    from client.gateway.outgoing_log import LOG_NAME, verify_log

    state_dir = Path(args.state_dir).expanduser()
    log = Path(args.log).expanduser() if args.log else state_dir / LOG_NAME
    public_key_path = Path(args.public_key).expanduser() if args.public_key else state_dir / PUBLIC_KEY_NAME
    if not log.exists() and not args.log and not public_key_path.exists():
        raise FedprivError(f"no outgoing log in {state_dir}: nothing has been sent from this state dir")
    if not log.exists() and args.log:
        raise FedprivError(f"log {log} not found")
    public_key = load_public_key(public_key_path)
    result = verify_log(log, public_key, head_path=args.head)
    if result.ok:
        print(f"{log}: {result}")
        return 0
    print(f"{log}: {result}", file=sys.stderr)
    return 1
