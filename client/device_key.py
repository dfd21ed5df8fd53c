"""The device key: what the device keeps of its adapters is encrypted at rest (AES-256-GCM).

A device's private adapter part (fedsa: its lora_B) and the last global adapter it received are
written sealed with this key; the files carry no tensor a reader of the state directory (a backup, a
copied disk, another user of the machine) could use without it.

The key is a random 256-bit key in a file created 0600 on first use (`<device folder>/device.key`,
or wherever node config `device-key` points, e.g. a volume other than the state directory's). It
is a file, not derived from a passphrase: a SuperNode starts unattended, so a passphrase would have
to sit in its environment or service file, which protects no better than a file only the SuperNode's
user can read, and a random key needs no key-derivation parameters to get right. Losing the key
loses the sealed files: it is never replaced silently (`DeviceFolder` refuses to make a new key
while sealed files exist), and a corrupt or wrong key is an error naming the file.

Each sealed file is `MAGIC | 12-byte nonce | ciphertext+tag`, with the file's purpose and the
client id as associated data, so a sealed file moved to another purpose or device fails to open.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedpriv.errors import DataError
from fedpriv.files import write_atomically

KEY_FILE = "device.key"
KEY_HEADER = "fedpriv-device-key-v1"
MAGIC = b"fedpriv-sealed-v1\n"
NONCE_BYTES = 12
KEY_MODE = 0o600


class DeviceKey:
    def __init__(self, key: bytes, path: Path) -> None:
        if len(key) != 32:
            raise ValueError("an AES-256 key has 32 bytes")
        self._aead = AESGCM(key)
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path) -> DeviceKey:
        """A new random key in a new file created 0600 (never over an existing one)."""
        path = Path(path)
        key = AESGCM.generate_key(bit_length=256)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{KEY_HEADER} {base64.b64encode(key).decode()}\n")
            handle.flush()
            os.fsync(handle.fileno())
        return cls(key, path)

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        """The key in `path`; DataError if the file is not a device key."""
        path = Path(path)
        try:
            header, encoded = path.read_text().split()
            key = base64.b64decode(encoded, validate=True)
            if header != KEY_HEADER or len(key) != 32:
                raise ValueError(header)
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise DataError(f"{path}: not a readable fedpriv device key ({type(err).__name__}); "
                            "the device's sealed files cannot be opened without its key") from None
        return cls(key, path)

    def seal(self, data: bytes, purpose: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + nonce + self._aead.encrypt(nonce, data, purpose)

    def unseal(self, blob: bytes, purpose: bytes, source: Path) -> bytes:
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
            raise DataError(f"{source}: not a sealed fedpriv file")
        nonce = blob[len(MAGIC):len(MAGIC) + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES:], purpose)
        except InvalidTag:
            raise DataError(f"{source}: cannot be opened with the device key {self.path} "
                            "(a different key, or the file was altered or belongs to another device)") from None

    def write_sealed(self, path: Path, data: bytes, purpose: bytes) -> None:
        write_atomically(path, self.seal(data, purpose))

    def read_sealed(self, path: Path, purpose: bytes) -> bytes:
        return self.unseal(Path(path).read_bytes(), purpose, path)
