"""A loopback proxy in front of a real storage (the reference HTTP server, moto's S3 server, Azurite)
that answers chosen calls with a status of its own, as a storage in trouble does, or the load balancer
in front of one: before the call reaches the storage, or after the storage acted on it (the answer
lost). Every other request goes through as it came, signature and all. It runs in its own threads, so
the same proxy serves a backend in the test's event loop and an operator process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

# Headers that belong to one connection, or that the proxy recomputes.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
)


def s3_error(code: str) -> bytes:
    """An S3 error body, as S3 answers a whole call it refuses."""
    declaration = '<?xml version="1.0" encoding="UTF-8"?>'
    return f"{declaration}\n<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()


@dataclass
class Fault:
    status: int
    when: Callable[[str, str], bool]  # (method, path with query): the calls it applies to
    body: bytes = b""
    after_acting: bool = False  # forward the call first: the storage acts, and its answer is lost
    retry_after: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # more of the answer's headers (an error code, a content type)


@dataclass
class Seen:
    method: str
    path: str
    status: int  # what the proxy answered
    forwarded: bool


@dataclass
class FaultProxy:
    upstream: str  # scheme://host:port of the storage
    faults: list[Fault] = field(default_factory=list)  # the next matching call takes the first
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.upstream = self.upstream.rstrip("/")
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=300))  # a slow store's reply still comes
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def fail(self, *faults: Fault) -> None:
        """Answer the next calls each of ``faults`` matches, in order, with its status."""
        with self._lock:
            self.faults += faults

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self.faults):
                if fault.when(method, path):
                    return self.faults.pop(index)
        return None

    def _relay(self, request: BaseHTTPRequestHandler) -> None:
        method, path = request.command, request.path
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        fault = self._take(method, path)
        answer: httpx.Response | None = None
        if fault is None or fault.after_acting:
            headers = [
                (name, value) for name, value in request.headers.items() if name.lower() != "connection"
            ]
            answer = self._client.request(method, self.upstream + path, headers=headers, content=body)
        if fault is None:
            assert answer is not None
            status, content = answer.status_code, answer.content
            reply_headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP]
        else:
            status, content = fault.status, fault.body
            reply_headers = list(fault.headers)
            if fault.retry_after:
                reply_headers.append(("Retry-After", fault.retry_after))
        with self._lock:
            self.seen.append(Seen(method, path, status, forwarded=answer is not None))
        request.send_response(status)
        for name, value in reply_headers:
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        if method != "HEAD":
            request.wfile.write(content)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._relay(self)

            def do_POST(self) -> None:
                proxy._relay(self)

            def do_PUT(self) -> None:
                proxy._relay(self)

            def do_HEAD(self) -> None:
                proxy._relay(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base's name)
                """Quiet: the test reads ``seen``."""

        return Handler
