"""The device signing key (Ed25519) of the privacy gateway.

Created on first use in the gateway state dir:

* ``device_ed25519.key`` -- private key, PEM (PKCS#8), mode 0600, never leaves the device;
* ``device_ed25519.pub`` -- public key, PEM (SubjectPublicKeyInfo), for `fedpriv gateway verify`
  and for anyone auditing the outgoing log.

Like ssh, a private key that other users can read is refused rather than used, and so is a state
dir that another user owns or can write (whoever can write the directory can swap files in it).
Files are written through `write_private_file`: a fresh random name opened with
O_CREAT|O_EXCL|O_NOFOLLOW in the checked directory, then renamed, so a planted symlink is never
followed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fedpriv.errors import FedprivError

PRIVATE_KEY_NAME = "device_ed25519.key"
PUBLIC_KEY_NAME = "device_ed25519.pub"


class DeviceKeyError(FedprivError):
    """The device key is missing, unreadable or unsafe."""


def ensure_state_dir(state_dir: str | os.PathLike[str]) -> Path:
    """Create the gateway state dir (mode 0700) if needed, check it (`check_private_dir`), return it."""
    path = Path(state_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise FedprivError(f"cannot create the gateway state dir {path}: {err.strerror or err}") from None
    check_private_dir(path)
    return path


def check_private_dir(path: Path) -> None:
    """FedprivError unless `path` is a directory owned by this user that no other user can write."""
    try:
        info = path.stat()
    except OSError as err:
        raise FedprivError(f"cannot read the gateway state dir {path}: {err.strerror or err}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise FedprivError(f"gateway state dir {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise FedprivError(f"gateway state dir {path} belongs to another user (uid {info.st_uid}); use a directory of your own")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise FedprivError(
            f"gateway state dir {path} can be written by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run `chmod 700 {path}`"
        )


def write_private_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically replace `path` with `data`: a new random temporary name in the same (checked)
    directory, opened O_EXCL|O_NOFOLLOW, fsync'ed, then renamed over `path`."""
    check_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short fingerprint of a public key: first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class DeviceKey:
    """An Ed25519 key pair used to sign the outgoing log."""

    def __init__(self, private_key: Ed25519PrivateKey, path: Path | None = None) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.path = path
        self.key_id = key_id(self.public_key)

    def __repr__(self) -> str:  # never print key material
        return f"DeviceKey(key_id={self.key_id!r}, path={str(self.path)!r})"

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._private_key.sign(data)).decode("ascii")

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, state_dir: str | os.PathLike[str], *, must_exist: bool = False) -> DeviceKey:
        """The state dir's key, created on first use. `must_exist`: a missing key is an error
        (once the outgoing log has entries, a new key would silently start another history)."""
        directory = ensure_state_dir(state_dir)
        private_path = directory / PRIVATE_KEY_NAME
        public_path = directory / PUBLIC_KEY_NAME
        if not private_path.exists() and must_exist:
            raise DeviceKeyError(
                f"device key {private_path} is missing but the outgoing log in {directory} has entries signed by it; "
                "restore the key (a new one would hide the old history); nothing was sent"
            )
        if not private_path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            try:
                # O_EXCL: two processes racing to create the key cannot overwrite each other's.
                fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                pass  # somebody else just created it: load theirs below
            except OSError as err:
                raise DeviceKeyError(f"cannot create the device key {private_path}: {err.strerror or err}") from None
            else:
                try:
                    os.write(fd, pem)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _write_public_key(public_path, key.public_key())
                _fsync_dir(directory)
        device_key = cls(_load_private_key(private_path), private_path)
        if not public_path.exists():
            _write_public_key(public_path, device_key.public_key)
        return device_key


def _write_public_key(path: Path, public_key: Ed25519PublicKey) -> None:
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_private_file(path, pem, 0o644)


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise DeviceKeyError(f"cannot read the device key {path}: {err.strerror or err}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DeviceKeyError(
            f"device key {path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise DeviceKeyError(f"cannot load the device key {path}: {err}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DeviceKeyError(f"device key {path} is not an Ed25519 private key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DeviceKeyError(f"cannot read the public key {path}: {err.strerror or err}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:  # also accept a raw 32-byte key in base64
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
        except (ValueError, TypeError) as err:
            raise DeviceKeyError(f"{path} is not a PEM or base64 Ed25519 public key: {err}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DeviceKeyError(f"{path} is not an Ed25519 public key")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature_b64: str, data: bytes) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
