"""Client for any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp server,
OpenAI, `transformers serve`, `fedpriv gateway serve`).

Plain `httpx` rather than the `openai` SDK, on purpose: the gateway must log the exact bytes that
leave the device before they leave, and own the retry policy (the SDK re-serializes the body and
retries on its own). The body sent is exactly `canonical_json(body)`, the bytes the outgoing log
hashes.

Bounds: `timeout` is a deadline for the WHOLE request (connect, send, every byte of the answer),
not for each read: a server that drips one byte at a time cannot hold a request past it. The
answer is read as a stream and refused beyond `max_response_bytes` (decoded size). httpx has no
total deadline of its own, so each attempt runs as one coroutine under `asyncio.wait_for`.

Retries: at most `max_retries` more attempts after the first, with exponential backoff, on
connection errors, timeouts and HTTP 5xx. Never on 4xx: the request itself is wrong, sending it
again changes nothing. Every attempt is logged before it is made.

The API key comes from the constructor, else ``FEDPRIV_CLOUD_API_KEY``, else ``OPENAI_API_KEY``;
it is sent only in the Authorization header and never logged or printed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from client.gateway.outgoing_log import OutgoingLog, canonical_json
from fedpriv.errors import FedprivError

API_KEY_ENV_VARS = ("FEDPRIV_CLOUD_API_KEY", "OPENAI_API_KEY")
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_RESPONSE_BYTES = 1 << 20  # a chat completion of a few hundred tokens is a few kB
USER_AGENT = "fedpriv-gateway/0.1"


class CloudError(FedprivError):
    """The cloud model could not answer. Nothing beyond the (already sanitized, logged) request left
    the device."""

    def __init__(self, message: str, *, url: str = "", attempts: int = 0, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.attempts = attempts
        self.status = status


class CloudUnreachable(CloudError):
    pass


class CloudTimeout(CloudError):
    pass


class CloudHTTPError(CloudError):
    pass


class CloudResponseError(CloudError):
    """The server answered 2xx but not with a chat completion."""


def normalize_base_url(base_url: str) -> str:
    """``http://host:port`` -> ``http://host:port/v1``; a URL with a path is kept as given.

    Raises CloudError for something that is not an http(s) URL."""
    raw = base_url.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CloudError(f"cloud URL {base_url!r} is not an http:// or https:// URL")
    path = parts.path.rstrip("/")
    if path.endswith("/chat/completions"):
        path = path[: -len("/chat/completions")]
    if not path:
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redact_url(url: str) -> str:
    """The URL without user:password@ (safe to print and log)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if parts.hostname and ":" in parts.hostname:  # IPv6 literal
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def api_key_from_env() -> str | None:
    for name in API_KEY_ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass
class CloudAnswer:
    text: str
    model: str | None
    attempts: int
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


class CloudClient:
    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        log: OutgoingLog | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout <= 0:
            raise CloudError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise CloudError(f"max retries must be >= 0, got {max_retries}")
        if max_response_bytes < 1:
            raise CloudError(f"max response bytes must be positive, got {max_response_bytes}")
        self.max_response_bytes = int(max_response_bytes)
        self.base_url = normalize_base_url(base_url)
        self.endpoint = self.base_url + "/chat/completions"
        self.display_url = redact_url(self.endpoint)
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.log = log
        self._sleep = sleep
        self.__api_key = api_key if api_key is not None else api_key_from_env()
        self._transport = transport
        self._ssl_context = None

    def __repr__(self) -> str:  # the key stays out of reprs and tracebacks
        return f"CloudClient(url={self.display_url!r}, model={self.model!r}, api_key={'***' if self.__api_key else None})"

    def build_body(self, messages: list[dict[str, str]], *, max_tokens: int | None = None, temperature: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": messages, "stream": False}
        if self.model:
            # Without a model, servers pinned to one model (transformers serve <model>, vLLM,
            # llama.cpp) use theirs; OpenAI and Ollama require one (--cloud-model).
            body["model"] = self.model
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        return body

    def complete(self, body: dict[str, Any], *, conversation: str | None = None) -> CloudAnswer:
        """POST `body` to /chat/completions with bounded retries; each attempt is logged first."""
        return _run(self._complete(body, conversation))

    async def _complete(self, body: dict[str, Any], conversation: str | None) -> CloudAnswer:
        payload = canonical_json(body)
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        attempts_allowed = 1 + self.max_retries
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout), transport=self._transport, follow_redirects=False, verify=self._tls()
        ) as http:
            return await self._attempts(http, body, payload, headers, conversation, attempts_allowed)

    def _tls(self):
        """Plain http needs no TLS context (building httpx's default one reads the CA bundle,
        ~0.1 s); https gets one, built once per client."""
        if self.endpoint.startswith("http://"):
            return False
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def _attempts(self, http, body, payload, headers, conversation, attempts_allowed) -> CloudAnswer:
        last_error: CloudError | None = None
        for attempt in range(1, attempts_allowed + 1):
            if attempt > 1:
                self._sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 2)))
            if self.log is not None:
                self.log.append(url=self.display_url, body=body, attempt=attempt, conversation=conversation)
            try:
                response = await asyncio.wait_for(self._post(http, payload, headers), timeout=self.timeout)
            except ResponseTooLarge:
                raise CloudResponseError(
                    f"cloud at {self.base_url_display} sent more than {self.max_response_bytes} bytes; answer refused",
                    url=self.display_url,
                    attempts=attempt,
                ) from None
            except (httpx.TimeoutException, TimeoutError):
                last_error = CloudTimeout(
                    f"cloud at {self.base_url_display} timed out after {self.timeout:g}s ({_attempts(attempt)})",
                    url=self.display_url,
                    attempts=attempt,
                )
                continue
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as err:
                last_error = CloudUnreachable(
                    f"cloud at {self.base_url_display} unreachable: {_describe(err)} ({_attempts(attempt)})",
                    url=self.display_url,
                    attempts=attempt,
                )
                continue
            except httpx.HTTPError as err:  # anything else httpx raises: not retried
                raise CloudError(
                    f"cloud at {self.base_url_display}: request failed: {_describe(err)}",
                    url=self.display_url,
                    attempts=attempt,
                ) from None
            if response.status_code >= 500:
                last_error = CloudHTTPError(
                    f"cloud at {self.base_url_display} returned HTTP {response.status_code}"
                    f"{_detail(response)} ({_attempts(attempt)})",
                    url=self.display_url,
                    attempts=attempt,
                    status=response.status_code,
                )
                continue
            if response.status_code >= 400 or response.status_code < 200 or response.status_code >= 300:
                hint = ""
                if response.status_code in (401, 403):
                    hint = f" (set {API_KEY_ENV_VARS[0]} to the API key)"
                elif response.status_code in (400, 404, 422) and not self.model:
                    hint = " (this server may need a model name: --cloud-model)"
                raise CloudHTTPError(
                    f"cloud at {self.base_url_display} returned HTTP {response.status_code}{_detail(response)}{hint}",
                    url=self.display_url,
                    attempts=attempt,
                    status=response.status_code,
                )
            return self._parse(response, attempt)
        assert last_error is not None
        raise last_error

    async def _post(self, http: httpx.AsyncClient, payload: bytes, headers: dict[str, str]) -> httpx.Response:
        """One POST, its answer read as a stream up to `max_response_bytes`."""
        async with http.stream("POST", self.endpoint, content=payload, headers=headers) as streamed:
            declared = streamed.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_response_bytes:
                raise ResponseTooLarge
            chunks: list[bytes] = []
            size = 0
            async for chunk in streamed.aiter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise ResponseTooLarge
                chunks.append(chunk)
            headers_in = {k: v for k, v in streamed.headers.items() if k.lower() not in ("content-encoding", "content-length")}
            return httpx.Response(streamed.status_code, headers=headers_in, content=b"".join(chunks))

    @property
    def base_url_display(self) -> str:
        return redact_url(self.base_url)

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        conversation: str | None = None,
    ) -> CloudAnswer:
        body = self.build_body(messages, max_tokens=max_tokens, temperature=temperature)
        return self.complete(body, conversation=conversation)

    def _parse(self, response: httpx.Response, attempts: int) -> CloudAnswer:
        try:
            data = response.json()
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise CloudResponseError(
                f"cloud at {self.base_url_display} returned HTTP {response.status_code} but not a chat completion",
                url=self.display_url,
                attempts=attempts,
                status=response.status_code,
            ) from None
        if content is None:
            content = ""
        if not isinstance(content, str):  # content parts
            try:
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            except TypeError:
                content = str(content)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return CloudAnswer(
            text=content,
            model=data.get("model") if isinstance(data.get("model"), str) else None,
            attempts=attempts,
            finish_reason=choice.get("finish_reason") if isinstance(choice, dict) else None,
            usage=usage,
        )


class ResponseTooLarge(Exception):
    """Raised inside an attempt when the answer exceeds the size cap."""


def _run(coro):
    """Run a coroutine to completion from sync code, also when the caller already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"


def _describe(err: Exception) -> str:
    text = str(err).strip()
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text.lower():
        return "host name not found"
    return text or type(err).__name__


def _detail(response: httpx.Response) -> str:
    """A short, single-line excerpt of an error body (servers put the reason there)."""
    try:
        data = response.json()
        if isinstance(data, dict):
            detail = data.get("error") or data.get("detail") or data.get("message")
            if isinstance(detail, dict):
                detail = detail.get("message") or detail
            text = str(detail) if detail else ""
        else:
            text = ""
    except ValueError:
        text = response.text
    text = " ".join(text.split())[:200]
    return f": {text}" if text else ""
