"""Outgoing log: hash chain + Ed25519 signatures + head; every kind of tampering is caught."""

from __future__ import annotations

import json
import stat

import pytest

from client.gateway.keys import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, DeviceKey, DeviceKeyError, load_public_key
from client.gateway.outgoing_log import (
    GENESIS_HASH,
    OutgoingLog,
    OutgoingLogError,
    canonical_json,
    head_path_for,
    read_entries,
    sha256_hex,
    verify_log,
)
from fedpriv.cli import main


def _body(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"question {i} about [PERSON_1]"}], "stream": False}


@pytest.fixture
def state(tmp_path):
    key = DeviceKey.load_or_create(tmp_path / "gw")
    log = OutgoingLog(tmp_path / "gw" / "outgoing.jsonl", key)
    for i in range(1, 6):
        log.append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(i))
    return tmp_path / "gw", log, key


def _lines(path):
    return path.read_bytes().split(b"\n")[:-1]


def _write(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_key_created_once_with_safe_permissions(tmp_path):
    key = DeviceKey.load_or_create(tmp_path / "gw")
    private = tmp_path / "gw" / PRIVATE_KEY_NAME
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "gw").stat().st_mode) & 0o077 == 0
    assert (tmp_path / "gw" / PUBLIC_KEY_NAME).exists()
    again = DeviceKey.load_or_create(tmp_path / "gw")
    assert again.key_id == key.key_id
    assert "PRIVATE" not in repr(key)
    private.chmod(0o644)
    with pytest.raises(DeviceKeyError, match="chmod 600"):
        DeviceKey.load_or_create(tmp_path / "gw")


def test_entries_are_chained_signed_and_verify(state):
    gw, log, key = state
    entries = read_entries(log.path)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS_HASH
    lines = _lines(log.path)
    for previous, entry in zip(lines, entries[1:]):
        assert entry["prev"] == sha256_hex(previous)
    assert all(e["body_sha256"] == sha256_hex(canonical_json(e["body"])) for e in entries)
    assert all(e["key_id"] == key.key_id and e["sig"] for e in entries)
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    result = verify_log(log.path, load_public_key(gw / PUBLIC_KEY_NAME))
    assert result.ok and result.entries == 5, result


@pytest.mark.parametrize(
    "tamper, bad_line",
    [
        ("edit", 3),
        ("edit_whitespace", 2),
        ("delete_middle", 3),
        ("delete_first", 1),
        ("delete_last", 5),
        ("swap", 2),
        ("insert_copy", 4),
        ("truncate_partial", 5),
    ],
)
def test_verify_names_first_bad_line(state, tamper, bad_line):
    gw, log, _ = state
    lines = _lines(log.path)
    if tamper == "edit":
        entry = json.loads(lines[2])
        entry["body"]["messages"][0]["content"] = "question 3 about John Smith"
        lines[2] = canonical_json(entry)
    elif tamper == "edit_whitespace":
        lines[1] = lines[1].replace(b'"seq":2', b'"seq": 2')
    elif tamper == "delete_middle":
        del lines[2]
    elif tamper == "delete_first":
        del lines[0]
    elif tamper == "delete_last":
        del lines[4]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    elif tamper == "insert_copy":
        lines.insert(3, lines[1])
    _write(log.path, lines)
    if tamper == "truncate_partial":
        log.path.write_bytes(log.path.read_bytes()[:-10])
    result = verify_log(log.path, load_public_key(gw / PUBLIC_KEY_NAME))
    assert not result.ok
    assert result.bad_line == bad_line, result


def test_wrong_public_key_fails(state, tmp_path):
    _, log, _ = state
    other = DeviceKey.load_or_create(tmp_path / "other")
    result = verify_log(log.path, other.public_key)
    assert not result.ok and result.bad_line == 1


def test_forged_entry_with_recomputed_chain_fails_signature(state):
    """An attacker without the key recomputes seq/prev/body hash: the signature still fails."""
    gw, log, _ = state
    lines = _lines(log.path)
    entry = json.loads(lines[4])
    entry["body"] = {"messages": [{"role": "user", "content": "forged"}]}
    entry["body_sha256"] = sha256_hex(canonical_json(entry["body"]))
    lines[4] = canonical_json(entry)
    _write(log.path, lines)
    result = verify_log(log.path, load_public_key(gw / PUBLIC_KEY_NAME))
    assert not result.ok and result.bad_line == 5 and "signature" in result.message


def test_corrupt_log_is_never_rewritten(state):
    _, log, _ = state
    log.path.write_bytes(log.path.read_bytes() + b'{"partial')
    before = log.path.read_bytes()
    with pytest.raises(OutgoingLogError, match="corrupt"):
        log.append(url="http://x/v1/chat/completions", body=_body(9))
    assert log.path.read_bytes() == before


def test_truncated_log_blocks_appending(state):
    _, log, _ = state
    _write(log.path, _lines(log.path)[:3])
    with pytest.raises(OutgoingLogError, match="deleted"):
        log.append(url="http://x/v1/chat/completions", body=_body(9))
    log.path.unlink()  # deleting the whole log is caught too
    with pytest.raises(OutgoingLogError, match="deleted"):
        log.append(url="http://x/v1/chat/completions", body=_body(9))


def test_missing_head_is_reported(state):
    gw, log, _ = state
    head_path_for(log.path).unlink()
    result = verify_log(log.path, load_public_key(gw / PUBLIC_KEY_NAME))
    assert not result.ok and "head" in result.message


def test_cli_verify_ok_and_failure(state, capsys):
    gw, log, _ = state
    assert main(["gateway", "verify", "--state-dir", str(gw)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "5 entries" in out
    lines = _lines(log.path)
    lines[1], lines[3] = lines[3], lines[1]
    _write(log.path, lines)
    assert main(["gateway", "verify", "--log", str(log.path), "--public-key", str(gw / PUBLIC_KEY_NAME)]) == 1
    err = capsys.readouterr().err
    assert "line 2" in err


# ---- hardening regressions (issue 21) -----------------------------------------------------------


def test_deleting_last_entry_and_head_then_sending_is_refused(state):
    gw, log, key = state
    _write(log.path, _lines(log.path)[:-1])
    head_path_for(log.path).unlink()
    with pytest.raises(OutgoingLogError, match="head .* is missing"):
        log.append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(6))
    assert len(_lines(log.path)) == 4  # nothing appended, so nothing sent
    result = verify_log(log.path, key.public_key)
    assert not result.ok and "head" in result.message


def test_replayed_old_head_is_refused(state):
    gw, log, key = state
    old_head = head_path_for(log.path).read_bytes()
    log.append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(6))
    log.append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(7))
    head_path_for(log.path).write_bytes(old_head)  # head at 5, log at 7
    with pytest.raises(OutgoingLogError, match="does not match its head"):
        log.append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(8))


def test_planted_symlinks_are_never_followed(state, tmp_path):
    gw, log, _ = state
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (gw / "outgoing.jsonl.head.tmp").symlink_to(victim)
    log.append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(6))
    assert victim.read_text() == "precious"
    assert verify_log(log.path, log.key.public_key).ok
    # the log itself replaced by a symlink: refused, the target untouched
    other = OutgoingLog(gw / "other.jsonl", log.key)
    (gw / "other.jsonl").symlink_to(victim)
    with pytest.raises(OutgoingLogError, match="cannot open"):
        other.append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(1))
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("mode", [0o770, 0o703, 0o777])
def test_state_dir_writable_by_others_is_refused(tmp_path, mode):
    from fedpriv.errors import FedprivError

    gw = tmp_path / "gw"
    gw.mkdir()
    gw.chmod(mode)
    with pytest.raises(FedprivError, match="can be written by other users"):
        DeviceKey.load_or_create(gw)
    gw.chmod(0o700)
    key = DeviceKey.load_or_create(gw)
    log = OutgoingLog(gw / "outgoing.jsonl", key)
    gw.chmod(mode)
    with pytest.raises(FedprivError, match="chmod 700"):
        log.append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(1))
    gw.chmod(0o700)


def test_missing_or_replaced_device_key_is_an_error_once_the_log_has_entries(state):
    from client.gateway.gateway import Gateway, GatewayOptions

    gw, log, _ = state
    (gw / PRIVATE_KEY_NAME).unlink()
    with pytest.raises(DeviceKeyError, match="missing"):
        Gateway.from_options(GatewayOptions(state_dir=str(gw), route="cloud"), sanitizer=object(), new_session=object)
    assert not (gw / PRIVATE_KEY_NAME).exists()  # not silently replaced
    new_key = DeviceKey.load_or_create(gw)  # somebody creates one by hand anyway
    with pytest.raises(OutgoingLogError, match="device key was replaced"):
        OutgoingLog(log.path, new_key).append(url="http://127.0.0.1:1/v1/chat/completions", body=_body(6))
