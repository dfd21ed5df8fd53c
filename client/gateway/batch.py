"""JSONL in, JSONL out: the gateway's batch mode (`fedpriv sanitize`, `fedpriv ask --input`).

A bad line is reported through `report(lineno, kind, message)` (kind "error", or "refused" for a
prompt the gateway would not answer) with its line number and skipped; the
other lines are still processed. Output is flushed line by line, so an interrupted batch keeps
what it finished.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from fedpriv.errors import DataError, FedprivError

Report = Callable[[int, str, str], None]  # (line number, "error" | "refused", message)


@contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """`path` (or stdin for "-") for reading as BYTES: each line is decoded on its own by
    `numbered_lines`, so one line of invalid UTF-8 does not stop the others. DataError naming the
    file if it can't be read."""
    if path == "-":
        yield getattr(sys.stdin, "buffer", sys.stdin)
        return
    try:
        handle = open(path, "rb")
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    with handle:
        yield handle


@contextmanager
def open_output(path: str, input_path: str) -> Iterator[IO[str]]:
    """`path` for writing, or stdout for "-"; refuses to overwrite the input file."""
    if path == "-":
        yield sys.stdout
        return
    if input_path != "-" and os.path.exists(path) and os.path.samefile(path, input_path):
        raise DataError(f"--output {path} is the input file")
    try:
        handle = open(path, "w", encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: cannot write: {err.strerror or err}") from None
    with handle:
        yield handle


def numbered_lines(fin: IO[bytes] | IO[str]) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, None) for every non-blank line, or (line number, None, problem) for a
    line that is not valid UTF-8. Lines are split on b"\\n" and decoded one by one, so a bad
    line is reported with its own number and the lines after it are still read."""
    for lineno, raw in enumerate(fin, start=1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield lineno, None, f"not valid UTF-8 (byte {err.start + 1}: {err.reason})"
                continue
        else:
            line = raw
        if line.strip():  # blank lines are allowed in JSONL
            yield lineno, line, None


# ---- fedpriv sanitize ----------------------------------------------------------------------------


def parse_sanitize_line(line: str, max_chars: int) -> dict[str, Any]:
    """The line's JSON object, checked: a "text" string, not empty, at most `max_chars` long."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, dict):
        raise DataError('expected a JSON object with a "text" field')
    if "text" not in obj:
        raise DataError('missing "text" field')
    text = obj["text"]
    if not isinstance(text, str):
        raise DataError(f'"text" must be a string, not {type(text).__name__}')
    if not text.strip():
        raise DataError('"text" is empty')
    if len(text) > max_chars:
        raise DataError(f'"text" has {len(text)} characters, over the limit of {max_chars} (--max-chars)')
    return obj


def sanitize_lines(fin: IO[bytes] | IO[str], fout: IO[str], sanitizer, report: Report, vault=None) -> tuple[int, int]:
    """Sanitize every line of `fin` into `fout`; returns (lines sanitized, lines with errors).

    Placeholders are consistent across the whole input, or per value of an optional "session"
    field; with a `vault` (client.gateway.session.EncryptedVault) one session, kept encrypted."""
    from client.gateway.session import ConversationSession
    from client.gateway.types import SanitizationError

    default_session = vault.open() if vault is not None else ConversationSession()
    sessions: dict[str, ConversationSession] = {}
    n_ok = n_bad = 0
    for lineno, line, problem in numbered_lines(fin):
        if problem is not None:
            report(lineno, "error", problem)
            n_bad += 1
            continue
        try:
            obj = parse_sanitize_line(line, sanitizer.config.max_chars)
        except DataError as err:
            report(lineno, "error", str(err))
            n_bad += 1
            continue
        session_key = obj.get("session")
        if session_key is None or vault is not None:
            session = default_session
        else:
            session = sessions.setdefault(str(session_key), ConversationSession(conversation_id=str(session_key)))
        try:
            result = sanitizer.sanitize(obj["text"], session)
        except SanitizationError as err:
            report(lineno, "error", f"not sanitized: {err}")
            n_bad += 1
            continue
        out = {
            "id": obj.get("id"),
            "sanitized": result.sanitized,
            "entities": [{"type": e.type, "start": e.start, "end": e.end, "replacement": e.replacement} for e in result.entities],
            "residual_risk": result.residual_risk,
        }
        fout.write(json.dumps(out, ensure_ascii=False) + "\n")
        fout.flush()
        n_ok += 1
    return n_ok, n_bad


# ---- fedpriv ask --input -------------------------------------------------------------------------


@dataclass
class AskCounts:
    """How many lines went each way (a route of the gateway, or an error)."""

    by_outcome: dict[str, int] = field(default_factory=lambda: {"local": 0, "cloud": 0, "refused": 0, "error": 0, "invalid": 0})

    @property
    def failed(self) -> int:
        return self.by_outcome["refused"] + self.by_outcome["error"] + self.by_outcome["invalid"]

    def __str__(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in self.by_outcome.items() if v) or "no lines"


def parse_ask_line(raw: str) -> tuple[Any, str]:
    """(id, text) of one `fedpriv ask --input` line; DataError naming what is wrong."""
    try:
        item = json.loads(raw)
    except ValueError as err:
        raise DataError(f"invalid JSON ({err})") from None
    if not isinstance(item, dict):
        raise DataError("expected a JSON object with 'id' and 'text'")
    if "id" not in item:
        raise DataError("missing 'id'")
    if not isinstance(item["id"], (str, int)) or isinstance(item["id"], bool):
        raise DataError("'id' must be a string or an integer")
    if not isinstance(item.get("text"), str):
        raise DataError("missing 'text' (a string)")
    return item["id"], item["text"]


def ask_lines(fin: IO[bytes] | IO[str], fout: IO[str], gateway, report: Report) -> AskCounts:
    """Ask the gateway every line of `fin`; one result line per input line in `fout`."""
    from client.gateway.cloud import CloudError
    from client.gateway.gateway import PromptError

    counts = AskCounts()
    for lineno, raw, problem in numbered_lines(fin):
        if problem is not None:
            counts.by_outcome["invalid"] += 1
            report(lineno, "error", problem)
            continue
        try:
            item_id, text = parse_ask_line(raw)
        except DataError as err:
            counts.by_outcome["invalid"] += 1
            report(lineno, "error", str(err))
            continue
        try:
            result = gateway.ask(text)
            record = {"id": item_id, **result.to_dict()}
            counts.by_outcome[result.route] += 1
            if not result.ok:
                report(lineno, "refused", result.reason)
        except (PromptError, CloudError, FedprivError) as err:
            counts.by_outcome["error"] += 1
            record = {"id": item_id, "route": "error", "answer": None, "reason": str(err)}
            report(lineno, "error", str(err))
        fout.write(json.dumps(record, ensure_ascii=False) + "\n")
        fout.flush()
    return counts
