"""The device key: AES-GCM sealing of what the device keeps, a key file created 0600, and clear errors."""

from __future__ import annotations

import os

import pytest

from client.device_key import DeviceKey
from fedpriv.errors import DataError


def test_key_file_is_created_0600_whatever_the_umask_and_never_overwritten(tmp_path):
    old = os.umask(0)  # the most permissive umask: the mode still comes from the create call
    try:
        key = DeviceKey.create(tmp_path / "k" / "device.key")
    finally:
        os.umask(old)
    assert key.path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        DeviceKey.create(key.path)
    assert DeviceKey.load(key.path).unseal(key.seal(b"lora tensors", b"p"), b"p", key.path) == b"lora tensors"


def test_sealed_data_opens_only_with_its_key_and_purpose(tmp_path):
    key, other = DeviceKey.create(tmp_path / "a.key"), DeviceKey.create(tmp_path / "b.key")
    blob = key.seal(b"secret adapter", b"private-adapter:hospital-00")
    assert b"secret" not in blob
    assert key.unseal(blob, b"private-adapter:hospital-00", tmp_path) == b"secret adapter"
    for wrong_key, purpose in ((other, b"private-adapter:hospital-00"), (key, b"global-adapter:hospital-00"),
                               (key, b"private-adapter:hospital-01")):
        with pytest.raises(DataError, match="cannot be opened with the device key"):
            wrong_key.unseal(blob, purpose, tmp_path / "f")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DataError, match="altered"):
        key.unseal(tampered, b"private-adapter:hospital-00", tmp_path / "f")
    with pytest.raises(DataError, match="not a sealed fedpriv file"):
        key.unseal(b"PK\x03\x04 plain safetensors", b"p", tmp_path / "f")


@pytest.mark.parametrize("content", [b"", b"fedpriv-device-key-v1\n", b"fedpriv-device-key-v1 c2hvcnQ=\n", b"\xff\xfe", b"other-v1 " + b"A" * 44])
def test_corrupt_key_file_is_named(tmp_path, content):
    path = tmp_path / "device.key"
    path.write_bytes(content)
    with pytest.raises(DataError, match="device.key: not a readable fedpriv device key"):
        DeviceKey.load(path)
