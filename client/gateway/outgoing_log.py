"""Tamper-evident log of every request body that leaves the device.

One JSON object per line (JSONL), written in canonical form (sorted keys, no spaces, UTF-8)::

    {"attempt":1,"body":{...},"body_sha256":"…","key_id":"…","prev":"…","seq":1,
     "sig":"…","ts":"2025-01-01T00:00:00.000+00:00","url":"http://…/v1/chat/completions","v":1}

* ``seq`` counts entries from 1; ``prev`` is the SHA-256 (hex) of the previous line's bytes (64
  zeros for the first entry): together they chain the entries, so deleting, inserting or
  reordering lines breaks the chain at the first affected line;
* ``sig`` is an Ed25519 signature, by the device key, of the canonical bytes of the entry without
  ``sig``: editing any field of any line breaks that line's signature;
* ``body`` is the request body exactly as sent (the wire bytes ARE ``canonical_json(body)``), and
  ``body_sha256`` its hash. Headers (and so the API key) are never logged.

Deleting entries at the END of a hash chain leaves a valid shorter chain, so a small signed *head*
file next to the log (``<log>.head``) records the sequence number and hash of the last entry;
`verify` reports a log shorter than its head. (Somebody holding the device key can of course
rewrite everything; the log protects against edits by anybody else.)

Writes are append + fsync under an exclusive lock, done BEFORE the request is sent; if the log
cannot be written, nothing is sent. A log whose last line is unreadable is never rewritten or
repaired automatically: appending fails until a human looks at it (`fedpriv gateway verify`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from client.gateway.keys import DeviceKey, check_private_dir, key_id, verify_signature, write_private_file
from fedpriv.errors import FedprivError

LOG_NAME = "outgoing.jsonl"
FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
_TAIL_CHUNK = 64 * 1024


class OutgoingLogError(FedprivError):
    """The outgoing log cannot be read or written: nothing may be sent."""


def canonical_json(obj: Any) -> bytes:
    """The one serialization used for log lines, signatures and request bodies."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def head_path_for(log_path: str | os.PathLike[str]) -> Path:
    log_path = Path(log_path)
    return log_path.with_name(log_path.name + ".head")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_last_line(fd: int) -> bytes | None:
    """The last line (without its newline) of the file open at `fd`, or None if the file is empty.

    Raises OutgoingLogError if the file does not end with a newline (a torn write)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) != b"\n":
        raise OutgoingLogError("the last line is incomplete (torn write?)")
    end = size - 1  # index of the final newline
    buf = b""
    pos = end
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        buf = os.pread(fd, pos - start, start) + buf
        pos = start
        newline = buf.rfind(b"\n")
        if newline != -1:
            return buf[newline + 1 :]
    return buf


def _parse_head(data: bytes) -> dict[str, Any]:
    head = json.loads(data)
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int) or not isinstance(head.get("hash"), str):
        raise ValueError("not a head record")
    return head


class OutgoingLog:
    """Append-only, hash-chained, signed JSONL log of outgoing request bodies."""

    def __init__(self, path: str | os.PathLike[str], key: DeviceKey) -> None:
        self.path = Path(path).expanduser()
        self.head_path = head_path_for(self.path)
        self.key = key

    def append(self, *, url: str, body: dict[str, Any], attempt: int = 1, conversation: str | None = None) -> dict[str, Any]:
        """Sign and durably append one entry; return it. Call BEFORE sending `body`.

        `conversation` (optional, local only, never sent) names the placeholder vault entry that
        maps this body's placeholders back to the originals."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise OutgoingLogError(f"cannot create {self.path.parent}: {err.strerror or err}") from None
        check_private_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as err:
            raise OutgoingLogError(f"cannot open the outgoing log {self.path}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                last = _read_last_line(fd)
            except OutgoingLogError as err:
                raise OutgoingLogError(
                    f"outgoing log {self.path} is corrupt: {err}; it is not rewritten automatically, "
                    "check it with `fedpriv gateway verify`; nothing was sent"
                ) from None
            if last is None:
                seq, prev = 1, GENESIS_HASH
            else:
                try:
                    last_entry = json.loads(last)
                    last_seq = int(last_entry["seq"])
                except (ValueError, KeyError, TypeError):
                    raise OutgoingLogError(
                        f"outgoing log {self.path} is corrupt: its last line is not a log entry; it is not "
                        "rewritten automatically, check it with `fedpriv gateway verify`; nothing was sent"
                    ) from None
                seq, prev = last_seq + 1, sha256_hex(last)
                if last_entry.get("key_id") != self.key.key_id:
                    raise OutgoingLogError(
                        f"outgoing log {self.path} is signed by key {last_entry.get('key_id')!r}, not by this device key "
                        f"{self.key.key_id}: the device key was replaced; nothing was sent"
                    )
            self._check_head(seq - 1, last)
            body_bytes = canonical_json(body)
            entry: dict[str, Any] = {
                "v": FORMAT_VERSION,
                "seq": seq,
                "ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "prev": prev,
                "key_id": self.key.key_id,
                "url": url,
                "attempt": attempt,
                "body": body,
                "body_sha256": sha256_hex(body_bytes),
            }
            if conversation is not None:
                entry["conversation"] = conversation
            entry["sig"] = self.key.sign(canonical_json(entry))
            line = canonical_json(entry)
            try:
                _write_all(fd, line + b"\n")
                os.fsync(fd)
            except OSError as err:
                raise OutgoingLogError(f"cannot append to the outgoing log {self.path}: {err.strerror or err}") from None
            self._write_head(seq, sha256_hex(line))
            return entry
        finally:
            os.close(fd)  # also releases the lock

    def _check_head(self, last_seq: int, last_line: bytes | None) -> None:
        """The head must agree with the log before anything is appended: present once the log has
        entries, signed by this key, recording the last entry (or the one before it, after a crash
        between the append and the head update). Otherwise deleting the last entries together with
        the head and sending once more would leave a log that verifies."""
        try:
            data = self.head_path.read_bytes()
        except FileNotFoundError:
            if last_seq == 0:
                return
            raise OutgoingLogError(
                f"outgoing log {self.path} has {last_seq} entries but its head {self.head_path} is missing: entries "
                "may have been deleted; check it with `fedpriv gateway verify`; nothing was sent"
            ) from None
        except OSError as err:
            raise OutgoingLogError(f"cannot read {self.head_path}: {err.strerror or err}") from None
        try:
            head = _parse_head(data)
            signature = head.pop("sig")
        except (ValueError, KeyError):
            raise OutgoingLogError(f"{self.head_path} is corrupt; check the log with `fedpriv gateway verify`; nothing was sent") from None
        if not verify_signature(self.key.public_key, signature, canonical_json(head)):
            raise OutgoingLogError(f"{self.head_path} is not signed by this device key; check the log with `fedpriv gateway verify`; nothing was sent")
        head_seq = head["seq"]
        if head_seq > last_seq:
            raise OutgoingLogError(
                f"outgoing log {self.path} has {last_seq} entries but its head records {head_seq}: entries were "
                "deleted; check it with `fedpriv gateway verify`; nothing was sent"
            )
        if head_seq < last_seq - 1 or (head_seq == last_seq and last_line is not None and sha256_hex(last_line) != head["hash"]):
            raise OutgoingLogError(
                f"outgoing log {self.path} does not match its head (head at entry {head_seq}, log at {last_seq}); "
                "check it with `fedpriv gateway verify`; nothing was sent"
            )

    def _write_head(self, seq: int, line_hash: str) -> None:
        head: dict[str, Any] = {"v": FORMAT_VERSION, "seq": seq, "hash": line_hash, "key_id": self.key.key_id}
        head["sig"] = self.key.sign(canonical_json(head))
        try:
            write_private_file(self.head_path, canonical_json(head) + b"\n")
        except OSError as err:
            raise OutgoingLogError(f"cannot write {self.head_path}: {err.strerror or err}") from None


# ---- verification ------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    ok: bool
    entries: int  # number of entries that verified (all of them when ok)
    bad_line: int | None = None  # 1-based line number of the first bad line
    message: str = ""

    def __str__(self) -> str:
        if self.ok:
            noun = "entry" if self.entries == 1 else "entries"
            return f"OK: {self.entries} {noun}, hash chain and signatures verified"
        return f"FAILED at line {self.bad_line}: {self.message}"


def verify_log(
    path: str | os.PathLike[str],
    public_key: Ed25519PublicKey,
    *,
    head_path: str | os.PathLike[str] | None = None,
    require_head: bool = True,
) -> VerifyResult:
    """Check every line of the log: canonical form, signature, sequence, hash chain, body hash; then
    the head (detects entries deleted at the end). Returns the first problem found."""
    path = Path(path).expanduser()
    head_path = Path(head_path).expanduser() if head_path is not None else head_path_for(path)
    expected_key_id = key_id(public_key)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
        if head_path.exists():
            return VerifyResult(False, 0, 1, f"log {path} is missing but its head {head_path} exists")
    except OSError as err:
        raise OutgoingLogError(f"cannot read the outgoing log {path}: {err.strerror or err}") from None

    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    else:  # no final newline: the last line is torn or was edited
        return _first_bad_then(lines, public_key, expected_key_id, len(lines), "line is incomplete (no final newline)")

    prev_hash = GENESIS_HASH
    for number, line in enumerate(lines, start=1):
        problem = _check_line(line, number, prev_hash, public_key, expected_key_id)
        if problem:
            return VerifyResult(False, number - 1, number, problem)
        prev_hash = sha256_hex(line)
    count = len(lines)

    # The head: catches entries deleted from the end of the chain.
    try:
        head_bytes = head_path.read_bytes()
    except FileNotFoundError:
        if count and require_head:
            return VerifyResult(
                False, count, count + 1, f"head file {head_path} is missing: cannot rule out deleted entries at the end"
            )
        return VerifyResult(True, count)
    except OSError as err:
        raise OutgoingLogError(f"cannot read {head_path}: {err.strerror or err}") from None
    try:
        head = _parse_head(head_bytes)
        signature = head.pop("sig")
    except (ValueError, KeyError):
        return VerifyResult(False, count, count + 1, f"head file {head_path} is corrupt")
    if not verify_signature(public_key, signature, canonical_json(head)):
        return VerifyResult(False, count, count + 1, f"head file {head_path}: signature does not verify")
    head_seq = head["seq"]
    if head_seq > count:
        return VerifyResult(
            False,
            count,
            count + 1,
            f"log ends after entry {count} but its head records {head_seq} entries: entries were deleted from the end",
        )
    if head_seq >= 1 and sha256_hex(lines[head_seq - 1]) != head["hash"]:
        return VerifyResult(False, head_seq - 1, head_seq, "entry differs from the one recorded in the head")
    # Entries after the head (a crash between the append and the head update) are still signed and
    # chained, so they are accepted.
    return VerifyResult(True, count)


def _first_bad_then(lines, public_key, expected_key_id, last_number, last_message) -> VerifyResult:
    prev_hash = GENESIS_HASH
    for number, line in enumerate(lines[:-1], start=1):
        problem = _check_line(line, number, prev_hash, public_key, expected_key_id)
        if problem:
            return VerifyResult(False, number - 1, number, problem)
        prev_hash = sha256_hex(line)
    return VerifyResult(False, last_number - 1, last_number, last_message)


def _check_line(
    line: bytes, number: int, prev_hash: str, public_key: Ed25519PublicKey, expected_key_id: str
) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return "not valid JSON"
    if not isinstance(entry, dict):
        return "not a log entry"
    try:
        if canonical_json(entry) != line:
            return "not in canonical form: the line was edited"
    except ValueError:
        return "not a log entry"
    signature = entry.pop("sig", None)
    if not isinstance(signature, str):
        return "entry is not signed"
    if entry.get("key_id") != expected_key_id:
        return f"signed by key {entry.get('key_id')!r}, not by the given public key {expected_key_id}"
    if not verify_signature(public_key, signature, canonical_json(entry)):
        return "signature does not verify: the entry was edited"
    if entry.get("seq") != number:
        return (
            f"sequence number {entry.get('seq')} where {number} was expected: "
            "entries were deleted, inserted or reordered"
        )
    if entry.get("prev") != prev_hash:
        return "hash chain broken: the previous entry was changed, deleted, inserted or moved"
    try:
        body_hash = sha256_hex(canonical_json(entry.get("body")))
    except ValueError:
        return "body is not serializable"
    if entry.get("body_sha256") != body_hash:
        return "body hash does not match the body"
    return None


def read_entries(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All entries, parsed (no verification). For display and tests."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise OutgoingLogError(f"cannot read the outgoing log {path}: {err}") from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]
