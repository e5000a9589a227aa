"""A local webhook receiver for tests: records every delivery, can be told to fail, stall
or answer 429 with Retry-After, and checks the documented payload shape and signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    at: float
    traces: list[dict[str, Any]]
    headers: dict[str, str]


@dataclass
class Behaviour:
    status: int = 200
    delay_s: float = 0.0
    retry_after: str | None = None


class QuietHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print a traceback when a client goes away
    mid-request (a killed server, a closed keep-alive connection): part of the tests."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@dataclass
class WebhookSink:
    secret: str | None = None
    behaviour: Behaviour = field(default_factory=Behaviour)
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: list[tuple[float, int]] = field(default_factory=list)  # (time, status answered)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, delayed ACKs add 40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                b = sink.behaviour
                if b.delay_s:
                    time.sleep(b.delay_s)
                status = b.status
                if status == 200:
                    sink._record(body, dict(self.headers.items()))
                with sink._lock:
                    sink.attempts.append((time.monotonic(), status))
                self.send_response(status)
                if b.retry_after is not None and status != 200:
                    self.send_header("Retry-After", b.retry_after)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _record(self, body: bytes, headers: dict[str, str]) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        if lower.get("content-type") != "application/json":
            self.problems.append(f"content-type {lower.get('content-type')}")
        if self.secret is not None:
            expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if lower.get("x-untrace-signature") != expected:
                self.problems.append("bad signature")
        try:
            payload = json.loads(body)
            traces = payload["traces"]
            assert isinstance(traces, list)
            for t in traces:
                assert isinstance(t["id"], str) and isinstance(t["startTime"], int)
        except (ValueError, KeyError, AssertionError) as exc:
            self.problems.append(f"bad payload: {exc!r}")
            return
        with self._lock:
            self.deliveries.append(Delivery(time.monotonic(), traces, lower))

    def ids(self) -> list[str]:
        with self._lock:
            return [t["id"] for d in self.deliveries for t in d.traces]

    def id_counts(self) -> Counter[str]:
        return Counter(self.ids())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
