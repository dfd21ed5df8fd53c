"""Client corpora on disk: one `<client_id>.jsonl` per client, one `{"text": ...}` object per line.

The same loader serves a user's own `--data DIR`, a real device's node config `data-path`, and the
synthetic federations the simulator writes, so every device has exactly one way to read its data
and every path to a client file gives the same checked client id.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from fedpriv.errors import DataError

_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A client id names the device's folder in a state directory: no path separators, no leading dot
# (so never "." or ".."), and short enough for any file system.
MAX_CLIENT_ID_LENGTH = 128
# Texts are cut to this many characters per token of `max-seq-len` before they are tokenized, so a
# 50 MB record costs no more to tokenize than a long normal one. The bound is far above the longest
# token of any common vocabulary (the default model's longest is 18 characters; BPE vocabularies hold
# whitespace or punctuation runs of a few dozen), so the cut never reaches the `max-seq-len` tokens a
# record is truncated to anyway.
MAX_CHARS_PER_TOKEN = 256


@dataclass(frozen=True)
class ClientSplit:
    client_id: str
    train: list[str]
    held_out: list[str]


def check_client_id(client_id: str, source: object) -> str:
    """`client_id` if it may name a device (letters, digits, '.', '_', '-'; starting with a letter or
    digit), else DataError naming `source` (the file or option it came from)."""
    if not _CLIENT_ID.fullmatch(client_id) or len(client_id) > MAX_CLIENT_ID_LENGTH:
        raise DataError(
            f"{source}: client id {client_id!r} must be letters, digits, '.', '_' or '-', start with a letter or digit, "
            f"and be at most {MAX_CLIENT_ID_LENGTH} characters"
        )
    return client_id


def client_id_of(path: Path) -> str:
    """The client id a client file stands for (its name without `.jsonl`), checked."""
    return check_client_id(Path(path).stem, path)


def clip_text(text: str, max_seq_len: int) -> str:
    """`text` cut to the characters that can matter for `max_seq_len` tokens (MAX_CHARS_PER_TOKEN)."""
    return text[: max_seq_len * MAX_CHARS_PER_TOKEN]


def list_client_files(data_dir: Path) -> list[Path]:
    """Sorted client files of a data directory (sorted so partition i is the same file everywhere)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    files = sorted(p for p in data_dir.glob("*.jsonl") if p.is_file())
    if not files:
        raise DataError(f"{data_dir}: no <client_id>.jsonl files found")
    for path in files:
        client_id_of(path)
    return files


def read_client_file(path: Path) -> list[str]:
    """All texts of one client file. Malformed lines (invalid UTF-8 or JSON, no text) raise DataError
    naming file and line."""
    texts: list[str] = []
    try:
        handle = open(path, "rb")  # bytes: a line that is not UTF-8 is reported by number, not as a traceback
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})") from None
            if not line.strip():
                continue  # blank lines are harmless (e.g. a trailing newline)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict) or "text" not in record:
                raise DataError(f'{path}:{number}: expected an object with a "text" field')
            text = record["text"]
            if not isinstance(text, str) or not text.strip():
                raise DataError(f'{path}:{number}: "text" must be a non-empty string')
            texts.append(text)
    if len(texts) < 2:
        raise DataError(f"{path}: needs at least 2 records (one to train on, one held out), found {len(texts)}")
    return texts


def split_records(client_id: str, texts: list[str], eval_fraction: float, seed: int) -> ClientSplit:
    """Seeded train / held-out split; the same (client, seed) always yields the same split."""
    order = list(range(len(texts)))
    random.Random(f"{seed}:{client_id}").shuffle(order)
    n_eval = min(len(texts) - 1, max(1, round(len(texts) * eval_fraction)))
    held_out = [texts[i] for i in order[:n_eval]]
    train = [texts[i] for i in order[n_eval:]]
    return ClientSplit(client_id=client_id, train=train, held_out=held_out)


def split_client_file(path: Path, eval_fraction: float, seed: int) -> ClientSplit:
    """A client file's train / held-out split, exactly as the device with that file splits it."""
    return split_records(client_id_of(path), read_client_file(Path(path)), eval_fraction, seed)


def load_client(data_dir: Path, partition_id: int, eval_fraction: float, seed: int) -> ClientSplit:
    files = list_client_files(data_dir)
    if not 0 <= partition_id < len(files):
        raise DataError(f"{data_dir}: partition {partition_id} requested but only {len(files)} client files exist")
    return split_client_file(files[partition_id], eval_fraction, seed)


def validate_data_dir(data_dir: Path) -> dict[str, int]:
    """Read every client file once up front so a malformed line fails before the federation starts."""
    return {path.stem: len(read_client_file(path)) for path in list_client_files(data_dir)}
