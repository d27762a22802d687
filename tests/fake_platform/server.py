"""The fake platform's HTTP plumbing: a threading server that reads bodies and sends replies.

The platform's decisions are in `platform`; this module only moves bytes, and does the two
things a plain `ThreadingHTTPServer` cannot: reset a connection (RST, no answer) on a drop
fault, and close every kept-alive connection when the platform stops.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from .request_log import RequestLog
from .wire import ENDPOINT

MAX_BODY = 64 * 1024 * 1024  # far above CREDIT_PLATFORM_BATCH records; refuses runaway bodies


@dataclass(frozen=True)
class _Reply:
    status: int | None  # None: reset the connection without answering
    payload: dict[str, Any] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


class _BadFraming(ValueError):
    """The request's body cannot be read as HTTP (answered 400/413, before any fault)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Platform(Protocol):
    """What the handler asks of the platform (`FakePlatform`): the I/O is here, the decisions
    there."""

    _stopping: threading.Event

    def _begin(self, method: str, path: str, key: str | None = None) -> RequestLog: ...

    def _decide_post(
        self, entry: RequestLog, key: str | None, signature: str | None, raw: bytes
    ) -> tuple[_Reply, dict[str, Any] | None]: ...

    def _finish(self, entry: RequestLog, status: int | None, client_gone: bool) -> None: ...

    def _notify(self, entry: RequestLog, body: dict[str, Any] | None) -> None: ...

    def _listing(self) -> list[dict[str, Any]]: ...


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that can reset a connection and close all of them on stop."""

    daemon_threads = True  # a handler never keeps the process alive
    allow_reuse_address = True  # the demo can be restarted on the same port at once

    def __init__(self, address: tuple[str, int], platform: _Platform) -> None:
        self.platform = platform
        self._conn_lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._to_reset: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._open.add(conn)

    def mark_reset(self, conn: socket.socket) -> None:
        """Make the coming close a reset (RST), the way a crashed peer or a middlebox drops a
        connection: the client sees a transport error, never an HTTP status."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._conn_lock:
            self._to_reset.add(conn)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._open.discard(request)
            reset = request in self._to_reset
            self._to_reset.discard(request)
        if reset:  # no orderly shutdown (FIN) first: close at once, with linger 0 = RST
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by its handler
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the job's pooled client expects
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stall
    server: _Server
    server_version = "FakeCreditPlatform/1"

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the log is FakePlatform.requests; the demo prints through on_request

    def do_POST(self) -> None:
        platform = self.server.platform
        entry = platform._begin("POST", self.path, self.headers.get("Idempotency-Key"))
        reply = _Reply(None)
        body: dict[str, Any] | None = None
        gone = False
        try:
            try:
                raw = self._read_body()
            except _BadFraming as exc:  # answered at once; no fault is used up
                self.close_connection = True
                reply = _Reply(exc.status, {"message": str(exc)})
            else:
                if self.path.split("?", 1)[0] != ENDPOINT:
                    reply = _Reply(404, {"message": f"no such endpoint: {self.path}"})
                else:
                    reply, body = platform._decide_post(
                        entry,
                        self.headers.get("Idempotency-Key"),
                        self.headers.get("X-Signature"),
                        raw,
                    )
                if reply.delay and platform._stopping.wait(reply.delay):
                    reply = _Reply(None)  # stopping: drop rather than keep the test waiting
            self._answer(reply)
        except OSError:  # the client went away (a read cut short, or a reply after it gave up)
            self.close_connection = gone = True
        finally:
            platform._finish(entry, reply.status, gone)
            platform._notify(entry, body)

    def do_GET(self) -> None:
        platform = self.server.platform
        entry = platform._begin("GET", self.path)
        path = self.path.split("?", 1)[0]
        if path == ENDPOINT:
            reply = _Reply(200, {"batches": platform._listing()})
        elif path == "/health":
            reply = _Reply(200, {"status": "ok"})
        else:
            reply = _Reply(404, {"message": f"no such endpoint: {self.path}"})
        gone = False
        try:
            self._answer(reply)
        except OSError:
            self.close_connection = gone = True
        finally:
            platform._finish(entry, reply.status, gone)
            platform._notify(entry, None)

    def _read_body(self) -> bytes:
        """The exact body bytes (Content-Length or chunked); _BadFraming if unreadable."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    length = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _BadFraming(400, "malformed chunked body") from None
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY:
                    raise _BadFraming(413, "the body is too large")
                chunks.append(self._read_exactly(length))
                self.rfile.readline(1024)  # the CRLF after the chunk
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        try:
            length = int(declared)
        except ValueError:
            raise _BadFraming(400, "Content-Length is not a number") from None
        if length < 0:
            raise _BadFraming(400, "Content-Length is negative")
        if length > MAX_BODY:
            raise _BadFraming(413, "the body is too large")
        return self._read_exactly(length)

    def _read_exactly(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionError("the client closed the connection in the middle of the body")
        return data

    def _answer(self, reply: _Reply) -> None:
        """Send the reply, or reset the connection when it has no status (OSError: client gone)."""
        if reply.status is None:
            self.server.mark_reset(self.connection)
            self.close_connection = True
            return
        data = json.dumps(reply.payload, ensure_ascii=False).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.delay:  # the client gave up long ago; do not keep a dead connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
