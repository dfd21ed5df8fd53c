"""`FakeCloud`: a tiny OpenAI-compatible server on 127.0.0.1 that records every raw request body
and answers by echoing back the placeholders found in the prompt (the gateway's wire tests)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")


class FakeCloud:
    """OpenAI-compatible endpoint on 127.0.0.1. mode: "echo" | "status" | "sleep" | "garbage" |
    "drip" (a valid answer, one byte every `sleep` seconds, status line included) | "huge" (a
    valid 200 answer of `size` bytes, no Content-Length, chunked)."""

    def __init__(self, mode: str = "echo", *, status: int = 503, sleep: float = 1.0, size: int = 4 << 20) -> None:
        self.mode = mode
        self.status = status
        self.sleep = sleep
        self.size = size
        self.requests: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with fake._lock:
                    fake.requests.append(raw)
                    fake.headers.append(dict(self.headers.items()))
                if fake.mode == "sleep":
                    time.sleep(fake.sleep)
                if fake.mode == "status":
                    self._send(fake.status, json.dumps({"error": {"message": "model overloaded"}}).encode())
                    return
                if fake.mode == "drip":
                    self._drip()
                    return
                if fake.mode == "huge":
                    self._huge()
                    return
                if fake.mode == "garbage":
                    self._send(200, b"<html>not json</html>")
                    return
                try:
                    body = json.loads(raw)
                    prompt = body["messages"][-1]["content"]
                except (ValueError, KeyError, IndexError, TypeError):
                    self._send(400, b'{"error": "bad request"}')
                    return
                found = PLACEHOLDER.findall(prompt)
                answer = "Echo: " + (", ".join(found) if found else "no placeholders")
                reply = {
                    "id": "fake-1",
                    "object": "chat.completion",
                    "model": body.get("model") or "fake",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                self._send(200, json.dumps(reply).encode())

            def _drip(self) -> None:
                payload = json.dumps({"choices": [{"message": {"content": "slow"}}]}).encode()
                raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)
                try:
                    for i in range(len(raw)):
                        self.wfile.write(raw[i : i + 1])
                        self.wfile.flush()
                        time.sleep(fake.sleep)
                except OSError:  # the client gave up
                    pass
                self.close_connection = True

            def _huge(self) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b" " * 65536
                    for _ in range(fake.size // len(chunk) + 1):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # the client gave up
                    pass
                self.close_connection = True

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # client gave up (timeout test)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> FakeCloud:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    @property
    def wire(self) -> bytes:
        """Every byte received, all requests concatenated (headers included)."""
        with self._lock:
            heads = b"".join(json.dumps(h).encode() for h in self.headers)
            return b"\n".join(self.requests) + heads


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
