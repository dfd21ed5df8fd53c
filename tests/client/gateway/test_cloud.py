"""Cloud client against real HTTP servers on 127.0.0.1 (tests.fake_cloud): retries, timeouts, errors, exact bytes."""

from __future__ import annotations

import time

import pytest

from client.gateway.cloud import (
    CloudClient,
    CloudError,
    CloudHTTPError,
    CloudResponseError,
    CloudTimeout,
    CloudUnreachable,
    normalize_base_url,
)
from client.gateway.keys import DeviceKey
from client.gateway.outgoing_log import OutgoingLog, OutgoingLogError, canonical_json, read_entries, verify_log
from tests.fake_cloud import FakeCloud, closed_port_url

def _client(url, tmp_path, **kwargs) -> tuple[CloudClient, OutgoingLog]:
    key = DeviceKey.load_or_create(tmp_path / "gw")
    log = OutgoingLog(tmp_path / "gw" / "outgoing.jsonl", key)
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("backoff", 0.01)
    return CloudClient(url, "m", log=log, **kwargs), log


MESSAGES = [{"role": "user", "content": "Hello [PERSON_1], call [PHONE_1]"}]


def test_success_sends_exactly_the_logged_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDPRIV_CLOUD_API_KEY", "sk-secret-123")
    with FakeCloud() as cloud:
        client, log = _client(cloud.url, tmp_path)
        answer = client.chat(MESSAGES, max_tokens=16)
    assert answer.text == "Echo: [PERSON_1], [PHONE_1]" and answer.attempts == 1
    entries = read_entries(log.path)
    assert len(cloud.requests) == len(entries) == 1
    assert cloud.requests[0] == canonical_json(entries[0]["body"])
    assert cloud.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert b"sk-secret-123" not in log.path.read_bytes()
    assert "sk-secret-123" not in repr(client)
    assert verify_log(log.path, log.key.public_key).ok


def test_connection_refused_is_clear_and_bounded(tmp_path):
    url = closed_port_url()
    client, log = _client(url, tmp_path, max_retries=2)
    with pytest.raises(CloudUnreachable) as info:
        client.chat(MESSAGES)
    assert "unreachable" in str(info.value) and url in str(info.value) and "3 attempts" in str(info.value)
    assert len(read_entries(log.path)) == 3  # each attempt logged before it was made
    assert verify_log(log.path, log.key.public_key).ok


def test_timeout_is_clear_and_bounded(tmp_path):
    with FakeCloud("sleep", sleep=1.0) as cloud:
        client, log = _client(cloud.url, tmp_path, timeout=0.2, max_retries=1)
        start = time.monotonic()
        with pytest.raises(CloudTimeout, match=r"timed out after 0.2s \(2 attempts\)"):
            client.chat(MESSAGES)
        assert time.monotonic() - start < 2.0
        assert len(cloud.requests) == 2
    assert verify_log(log.path, log.key.public_key).entries == 2


def test_5xx_retried_then_clear_error(tmp_path):
    slept = []
    with FakeCloud("status", status=503) as cloud:
        client, log = _client(cloud.url, tmp_path, max_retries=2, backoff=0.25, sleep=slept.append)
        with pytest.raises(CloudHTTPError, match="returned HTTP 503: model overloaded") as info:
            client.chat(MESSAGES)
    assert info.value.status == 503 and info.value.attempts == 3
    assert len(cloud.requests) == 3
    assert slept == [0.25, 0.5]  # exponential backoff
    assert verify_log(log.path, log.key.public_key).entries == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_4xx_not_retried(tmp_path, status):
    with FakeCloud("status", status=status) as cloud:
        client, _ = _client(cloud.url, tmp_path, max_retries=2)
        with pytest.raises(CloudHTTPError, match=f"HTTP {status}"):
            client.chat(MESSAGES)
    assert len(cloud.requests) == 1


def test_non_json_answer(tmp_path):
    with FakeCloud("garbage") as cloud:
        client, _ = _client(cloud.url, tmp_path, max_retries=2)
        with pytest.raises(CloudResponseError, match="not a chat completion"):
            client.chat(MESSAGES)
    assert len(cloud.requests) == 1


def test_log_failure_means_nothing_sent(tmp_path):
    with FakeCloud() as cloud:
        client, log = _client(cloud.url, tmp_path)
        log.path.write_bytes(b"garbage without newline")
        with pytest.raises(OutgoingLogError, match="nothing was sent"):
            client.chat(MESSAGES)
    assert cloud.requests == []


def test_base_url_normalization():
    assert normalize_base_url("http://127.0.0.1:8765") == "http://127.0.0.1:8765/v1"
    assert normalize_base_url("http://127.0.0.1:8765/v1/") == "http://127.0.0.1:8765/v1"
    assert normalize_base_url("http://h/v1/chat/completions") == "http://h/v1"
    assert normalize_base_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"
    with pytest.raises(CloudError):
        normalize_base_url("ftp://h")


def test_deadline_bounds_the_whole_request_not_each_read(tmp_path):
    """A server dripping one byte every 0.1 s never trips a per-read timeout; the deadline holds."""
    with FakeCloud("drip", sleep=0.1) as cloud:
        client, _ = _client(cloud.url, tmp_path, timeout=0.5, max_retries=0)
        start = time.monotonic()
        with pytest.raises(CloudTimeout, match=r"timed out after 0.5s"):
            client.chat(MESSAGES)
        elapsed = time.monotonic() - start
    assert elapsed < 1.5, elapsed


def test_response_size_is_capped(tmp_path):
    with FakeCloud("huge", size=2 << 20) as cloud:
        client, _ = _client(cloud.url, tmp_path, max_retries=2, max_response_bytes=64 * 1024)
        with pytest.raises(CloudResponseError, match="more than 65536 bytes"):
            client.chat(MESSAGES)
    assert len(cloud.requests) == 1  # not retried: the same server would send the same
