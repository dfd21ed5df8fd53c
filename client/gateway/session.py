"""Conversation-scoped placeholder map, kept on the device and encrypted at rest.

``ConversationSession`` implements ``types.PlaceholderSession``: the same original string gets the
same typed, numbered placeholder (``[PERSON_1]``, ``[MRN_1]``) for the whole conversation, and
``restore`` puts the originals back into the cloud's answer.

``EncryptedVault`` stores a session as one Fernet token (AES-128-CBC + HMAC-SHA256, from
``cryptography``) in a file created with 0600 permissions. The key is either passed in or read from
a key file that ``load_or_create_key`` creates with 0600 permissions (never overwritten). Nothing
but ciphertext is written: the file contains no original identifier.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from fedpriv.errors import FedprivError

PLACEHOLDER_RE = re.compile(r"\[([A-Z][A-Z0-9_]*?)_(\d+)\]")
# What a model may echo back instead of the exact placeholder: "[person_1]", "[PERSON 1]",
# "[ PERSON_1 ]", "PERSON_1" (bare) or "<PERSON_1>".
_RESTORE_RE = re.compile(
    r"\[([A-Z][A-Z0-9_]*?)_(\d+)\]"
    r"|[\[<]\s*([A-Za-z][A-Za-z0-9_]*?)[_ ](\d+)\s*[\]>]"
    r"|(?<![\w\[])([A-Z][A-Z0-9_]*?)_(\d+)(?![\w\]])"
)


class VaultError(FedprivError):
    """The placeholder vault cannot be read or written (wrong key, corrupt file, permissions)."""


class ConversationSession:
    """Bidirectional original <-> placeholder map for one conversation."""

    def __init__(self, conversation_id: str | None = None, vault: "EncryptedVault | None" = None) -> None:
        self.conversation_id = conversation_id or secrets.token_hex(8)
        self._to_placeholder: dict[str, str] = {}
        self._to_original: dict[str, str] = {}
        self._counters: dict[str, int] = {}
        self._order: list[tuple[str, str]] = []  # (type, original) in the order they were mapped
        self._lock = threading.Lock()
        self._dirty = False
        self.vault = vault
        self.revision = 0  # bumps on every new placeholder (lets callers cache derived data)

    # ---- PlaceholderSession protocol ------------------------------------------------------
    def placeholder_for(self, entity_type: str, original: str) -> str:
        with self._lock:
            existing = self._to_placeholder.get(original)
            if existing is not None:
                return existing
            etype = re.sub(r"[^A-Z0-9_]", "_", entity_type.upper()) or "ID"
            n = self._counters.get(etype, 0) + 1
            self._counters[etype] = n
            placeholder = f"[{etype}_{n}]"
            self._to_placeholder[original] = placeholder
            self._to_original[placeholder] = original
            self._order.append((etype, original))
            self._dirty = True
            self.revision += 1
            return placeholder

    def restore(self, text: str) -> str:
        """Replace every known placeholder in ``text`` by its original; unknown ones stay as they are.

        One left-to-right pass over the answer (restored text is never re-scanned). Exact
        placeholders are restored wherever the model put them; so are the variants models tend to
        echo ("[person_1]", "[PERSON 1]", "<PERSON_1>", bare "PERSON_1") when they name a known one.
        """
        if not self._to_original:
            return text
        table = self._to_original

        def sub(m: re.Match) -> str:
            if m.group(1) is not None:
                key = f"[{m.group(1)}_{m.group(2)}]"
            elif m.group(3) is not None:
                key = f"[{m.group(3).upper()}_{m.group(4)}]"
            else:
                key = f"[{m.group(5)}_{m.group(6)}]"
            return table.get(key, m.group(0))

        return _RESTORE_RE.sub(sub, text)

    # ---- extras ---------------------------------------------------------------------------
    def originals(self, entity_type: str | None = None) -> list[str]:
        with self._lock:
            if entity_type is None:
                return list(self._to_placeholder)
            prefix = f"[{entity_type}_"
            return [o for o, p in self._to_placeholder.items() if p.startswith(prefix)]

    def originals_since(self, count: int) -> list[tuple[str, str]]:
        """(type, original) of the mappings made after the first `count` (lets callers index
        the conversation's originals incrementally: O(new) per prompt, not O(all))."""
        with self._lock:
            return self._order[count:]

    def mapping(self) -> dict[str, str]:
        """placeholder -> original (a copy; stays on the device)."""
        with self._lock:
            return dict(self._to_original)

    def __len__(self) -> int:
        return len(self._to_original)

    def to_dict(self) -> dict:
        with self._lock:
            return {
                "version": 1,
                "conversation_id": self.conversation_id,
                "map": dict(self._to_original),
                "counters": dict(self._counters),
            }

    @classmethod
    def from_dict(cls, data: dict, vault: "EncryptedVault | None" = None) -> "ConversationSession":
        if data.get("version") != 1 or not isinstance(data.get("map"), dict):
            raise VaultError("placeholder vault has an unknown format")
        session = cls(conversation_id=str(data.get("conversation_id") or ""), vault=vault)
        for placeholder, original in data["map"].items():
            if not PLACEHOLDER_RE.fullmatch(placeholder) or not isinstance(original, str):
                raise VaultError("placeholder vault is corrupt")
            session._to_original[placeholder] = original
            session._to_placeholder[original] = placeholder
            session._order.append((PLACEHOLDER_RE.fullmatch(placeholder).group(1), original))
        session._counters = {str(k): int(v) for k, v in data.get("counters", {}).items()}
        session.revision = len(session._to_original)
        return session

    def commit(self) -> None:
        """Persist new mappings to the vault (no-op without a vault or without changes)."""
        if self.vault is not None and self._dirty:
            self.vault.save(self)
            self._dirty = False


def load_or_create_key(path: str | Path) -> bytes:
    """Read a Fernet key file, creating it (0600, never overwriting) when it does not exist."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise VaultError(f"{path} is not a valid vault key") from None
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise VaultError(f"{path} must not be readable by others (chmod 600 {path})")
        return key
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key


class EncryptedVault:
    """One conversation's placeholder map in an encrypted file (0600)."""

    def __init__(self, path: str | Path, key: bytes | str | None = None, key_file: str | Path | None = None) -> None:
        if key is None and key_file is None:
            raise VaultError("an encryption key or a key file is required for the vault")
        if key is None:
            key = load_or_create_key(key_file)
        try:
            self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
        except (ValueError, TypeError):
            raise VaultError("invalid vault key (expected a urlsafe-base64 32-byte Fernet key)") from None
        self.path = Path(path)

    def save(self, session: ConversationSession) -> None:
        token = self._fernet.encrypt(json.dumps(session.to_dict(), ensure_ascii=False).encode("utf-8"))
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(token)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def load(self) -> ConversationSession:
        try:
            token = self.path.read_bytes()
        except FileNotFoundError:
            raise VaultError(f"vault not found: {self.path}") from None
        try:
            data = json.loads(self._fernet.decrypt(token).decode("utf-8"))
        except InvalidToken:
            raise VaultError(f"cannot decrypt {self.path}: wrong key or tampered file") from None
        return ConversationSession.from_dict(data, vault=self)

    def open(self, conversation_id: str | None = None) -> ConversationSession:
        """The stored session if the file exists, else a new empty one bound to this vault."""
        if self.path.exists():
            return self.load()
        return ConversationSession(conversation_id=conversation_id, vault=self)
