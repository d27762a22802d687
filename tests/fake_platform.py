"""A fake of the city's "双随机、一公开" platform: a real HTTP server on loopback.

The sharing job must deliver every batch exactly once through whatever the network and the
platform do to it, so its tests need a platform that misbehaves on cue and keeps an honest
count of what it applied. This one speaks the wire format of issue 4 (documented in the
README) over real TCP, so the job's real HTTP client, timeouts and retries are what is tested:

    POST /api/credit-ratings
    Idempotency-Key: <the same on every retry of a batch>
    X-Signature: <hex HMAC-SHA256 of the exact body bytes with the shared secret>
    {"batch_id": str, "district_code": "120111", "year": int, "scale": str, "revision": int,
     "supersedes": [batch ids], "evaluated_by": {"name": str, "uscc": str},
     "evaluated_on": "YYYY-MM-DD", "chain_hash": str,
     "records": [{"uscc": str (18), "name": str, "licence_no": str, "score": number,
                  "grade": str, "vetoed": bool, "valid_from": "YYYY-MM-DD",
                  "valid_to": "YYYY-MM-DD"}, ...]}

Answers, when no fault is scripted: 201 {"receipt_id", "batch_id", "records"} when the batch is
new and stored; 409 {"message", "receipt_id"} (the original receipt) when its key was already
applied; 401 {"message"} for a missing or wrong signature; 400 {"message"} without an
Idempotency-Key; 422 {"message"} for a body that is not JSON of the shape above (the message
names the offending field). The checks run in that order, as a real platform authenticates
before it reads. A key once applied is never applied again, whatever the faults.

`GET /api/credit-ratings` lists the applied batches (for the demo); it consumes no fault.

In tests::

    with FakePlatform("secret") as platform:
        platform.script(ERROR_500, TOO_MANY(0.05), DROP_AFTER)
        ...  # run the sharing job against platform.url
        assert set(platform.applications.values()) == {1}

By hand, for a demo (prints every request it receives, and its base URL)::

    python -m tests.fake_platform --port 8100 --secret demo-secret [--fault 500 --fault 429:2]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import hmac
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

ENDPOINT = "/api/credit-ratings"
MAX_BODY = 64 * 1024 * 1024  # far above CREDIT_PLATFORM_BATCH records; refuses runaway bodies


# --- Faults -----------------------------------------------------------------------------------
# Each scripted fault is used up by exactly one POST to the endpoint, in arrival order. Faults
# that *replace* the platform's work (a 500, a 429, a slow 503, a drop before storing, a 422)
# store nothing and skip every check. Faults that *wrap* it (a drop after storing, a slow reply
# after storing, a duplicate acknowledgement) let the request be checked and applied as usual,
# then spoil only the answer: what the platform did and what the client hears can differ,
# which is exactly what the sharing job must survive.


class Fault:
    """Base of the scripted faults; `label` is how the log and the demo name one."""

    @property
    def label(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class ServerError(Fault):
    """Answer `status` (5xx) without storing: the platform failed before it looked."""

    status: int = 500

    @property
    def label(self) -> str:
        return str(self.status)


@dataclass(frozen=True)
class TooMany(Fault):
    """Answer 429 with `Retry-After: retry_after` (seconds) without storing.

    Fractional seconds ("0.05") keep tests fast; whole numbers are sent as integers ("2"), the
    form real servers use. `None` sends no Retry-After, so the client must choose its own wait.
    """

    retry_after: float | None = 1

    def __post_init__(self) -> None:
        if self.retry_after is not None and not (
            math.isfinite(self.retry_after) and self.retry_after >= 0
        ):
            raise ValueError(f"Retry-After must be a finite number >= 0, not {self.retry_after}")

    @property
    def header(self) -> str | None:
        """The Retry-After header's value, or None when none is sent."""
        if self.retry_after is None:
            return None
        seconds = float(self.retry_after)
        return str(int(seconds)) if seconds.is_integer() else repr(seconds)

    @property
    def label(self) -> str:
        return "429" if self.header is None else f"429 (Retry-After {self.header})"


@dataclass(frozen=True)
class Slow(Fault):
    """Hold the reply for `seconds`, which must exceed the client's timeout.

    By default nothing is stored and the late reply is a 503: the client gave up on a platform
    that did nothing. With `applies=True` the batch is checked and applied on arrival and only
    the (normal) answer is late: the client gave up on a platform that did store it, so its
    retry must be answered 409 and the batch still be applied once.
    """

    seconds: float
    applies: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"a delay must be a finite number >= 0, not {self.seconds}")

    @property
    def label(self) -> str:
        return f"slow {self.seconds:g}s" + (" (applied)" if self.applies else "")


@dataclass(frozen=True)
class DropBefore(Fault):
    """Read the request, store nothing, reset the connection without a response."""

    @property
    def label(self) -> str:
        return "drop-before"


@dataclass(frozen=True)
class DropAfter(Fault):
    """Check and apply the batch as usual, then reset the connection without a response.

    The client sees a transport error for a batch that was in fact stored; its retry gets 409.
    """

    @property
    def label(self) -> str:
        return "drop-after"


@dataclass(frozen=True)
class DuplicateAck(Fault):
    """Check and apply as usual, but acknowledge with 200 and the receipt, never 409.

    Some platforms acknowledge a repeated key as a plain success; the client must treat a
    second success for the same batch as delivered, not as a second delivery.
    """

    @property
    def label(self) -> str:
        return "duplicate-ack"


@dataclass(frozen=True)
class Reject422(Fault):
    """Answer 422 {"message": message} without storing: a rejection the client must not retry."""

    message: str = "rejected by the platform"

    @property
    def label(self) -> str:
        return f"422 ({self.message})"


# The names the sharing job's tests use (constants for the faults without parameters).
ERROR_500 = ServerError(500)
TOO_MANY = TooMany
SLOW = Slow
DROP_BEFORE = DropBefore()
DROP_AFTER = DropAfter()
DUPLICATE_ACK = DuplicateAck()
REJECT_422 = Reject422


def parse_fault(text: str) -> Fault:
    """A fault from its command-line spelling, for the demo's `--fault`.

    `500` `502` `503` (any 5xx), `429` `429:2` `429:0.5`, `slow:15` `slow:15:applies`,
    `drop-before`, `drop-after`, `duplicate-ack`, `422` `422:some message`.
    """
    name, _, arg = text.strip().partition(":")
    name = name.lower()
    try:
        if re.fullmatch(r"5\d\d", name) and not arg:
            return ServerError(int(name))
        if name == "429":
            return TooMany(float(arg)) if arg else TooMany()
        if name == "slow":
            seconds, _, flag = arg.partition(":")
            if flag not in ("", "applies"):
                raise ValueError(flag)
            return Slow(float(seconds), applies=flag == "applies")
        if name == "422":
            return Reject422(arg) if arg else Reject422()
        if not arg and name in ("drop-before", "drop-after", "duplicate-ack"):
            return {"drop-before": DROP_BEFORE, "drop-after": DROP_AFTER}.get(name, DUPLICATE_ACK)
    except ValueError:
        pass
    raise ValueError(
        f"unknown fault {text!r}: use 500 (any 5xx), 429[:SECONDS], slow:SECONDS[:applies], "
        "drop-before, drop-after, duplicate-ack or 422[:MESSAGE]"
    )


# --- The log ----------------------------------------------------------------------------------


@dataclass
class RequestLog:
    """One request as the platform saw it, and what it did about it.

    Entries are added on arrival, before any delay, so a test can count attempts while a slow
    reply is still pending; `finished_at` stays None until the reply is sent or dropped.
    Times are `time.monotonic()`, to measure waits (e.g. that Retry-After was honoured).
    """

    at: float
    method: str
    path: str
    key: str | None = None  # the Idempotency-Key header
    batch_id: str | None = None  # from the body, when it could be read
    signature_ok: bool | None = None  # None: not a POST to the endpoint
    fault: Fault | None = None  # the scripted fault this request used up
    applied: bool = False  # this request applied its batch (at most one request per key)
    # The answer (after a delay: the answer due). None: the connection was reset unanswered,
    # by a drop fault, or because the platform stopped while a slow reply was pending.
    status: int | None = None
    receipt_id: str | None = None
    # For a key already applied: whether this body equals the one stored. A retry that changes
    # the body under the same key is a bug of the client, even though 409 hides it.
    body_matches_applied: bool | None = None
    client_gone: bool = False  # the client left before the answer could be sent (after SLOW)
    finished_at: float | None = None


@dataclass(frozen=True)
class _Reply:
    status: int | None  # None: reset the connection without answering
    payload: dict[str, Any] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


class _Invalid(ValueError):
    """The body is not of the expected shape; the message names the field."""


class _BadFraming(ValueError):
    """The request's body cannot be read as HTTP (answered 400/413, before any fault)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- The platform -----------------------------------------------------------------------------


class FakePlatform:
    """The fake platform: start it, point the sharing job at `url`, script faults, inspect.

    All state is behind one lock, since the HTTP server answers each connection on its own
    thread and a client may retry while an earlier attempt is still being handled.
    """

    def __init__(
        self,
        secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[RequestLog, dict[str, Any] | None], None] | None = None,
    ) -> None:
        """`port=0` picks a free port (see `url` once started). `on_request` is called, on the
        handler's thread, after each request is answered or dropped, with its log entry and
        the parsed body (None if it was not JSON): the demo prints through it."""
        self._secret = secret.encode("utf-8")
        self._host = host
        self._port = port
        self._on_request = on_request
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._faults: deque[Fault] = deque()
        self._applied: dict[str, dict[str, Any]] = {}
        self._receipts: dict[str, str] = {}
        self._applications: Counter[str] = Counter()
        self._requests: list[RequestLog] = []
        self._busy = 0
        self._receipt_seq = 0

    # Life cycle

    def start(self) -> FakePlatform:
        """Bind and serve on a background thread; returns self, so `p = FakePlatform(s).start()`."""
        if self._server is not None:
            raise RuntimeError("the fake platform is already running")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # how long stop() waits for the loop
            name=f"fake-platform:{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake any slow reply (it is dropped), and close every open connection.

        Closing the kept-alive connections ends their handler threads now rather than when the
        client goes away, so a test's platform leaves nothing running behind it. The stored
        batches and the log are kept: `start()` again is a platform that restarted.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self.wait_idle(timeout=5)  # so that the log is final once stop() returns
        self._server = self._thread = None

    def __enter__(self) -> FakePlatform:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:54321 (the job appends /api/credit-ratings)."""
        if self._server is None:
            raise RuntimeError("the fake platform is not running: call start() first")
        host, port = self._server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    # Scripting

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next POSTs, one per request, in order; then serve normally.

        Calls add to the queue; `reset()` empties it.
        """
        for fault in faults:
            if isinstance(fault, type) and issubclass(fault, Fault):
                raise TypeError(f"{fault.__name__} needs its arguments: {fault.__name__}(...)")
            if not isinstance(fault, Fault):
                raise TypeError(f"not a fault: {fault!r}")
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> tuple[Fault, ...]:
        """The scripted faults not used up yet."""
        with self._lock:
            return tuple(self._faults)

    def reset(self) -> None:
        """Forget every batch, receipt, request and pending fault (e.g. between the examples of
        a hypothesis test sharing one server). Requests still being handled are not stopped."""
        with self._lock:
            self._faults.clear()
            self._applied.clear()
            self._receipts.clear()
            self._applications.clear()
            self._requests.clear()

    # Inspection: copies, so a test can neither see a half-updated state nor change it.

    @property
    def applied(self) -> dict[str, dict[str, Any]]:
        """Idempotency key -> body as stored, in the order the batches were applied."""
        with self._lock:
            return copy.deepcopy(self._applied)

    @property
    def receipts(self) -> dict[str, str]:
        """Idempotency key -> the receipt_id given when its batch was applied."""
        with self._lock:
            return dict(self._receipts)

    @property
    def applications(self) -> Counter[str]:
        """How many times each key was applied. Always 1 by construction; tests assert it so
        that a regression in the platform's own deduplication cannot hide a double delivery."""
        with self._lock:
            return Counter(self._applications)

    @property
    def requests(self) -> list[RequestLog]:
        """Every request received, in arrival order (copies of the log entries)."""
        with self._lock:
            return [replace(entry) for entry in self._requests]

    def records(self) -> list[dict[str, Any]]:
        """All records of all applied batches, in the order applied."""
        with self._lock:
            return [copy.deepcopy(r) for body in self._applied.values() for r in body["records"]]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being handled (e.g. a slow reply still sleeping); False if
        still busy after `timeout` seconds. A request counts from the moment its headers have
        been read, so call this once the client is done sending."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    # Handling (called by the HTTP handler; the I/O stays there, the decisions are here)

    def _begin(self, method: str, path: str, key: str | None = None) -> RequestLog:
        entry = RequestLog(at=time.monotonic(), method=method, path=path, key=key)
        with self._lock:
            self._busy += 1
            self._requests.append(entry)
        return entry

    def _finish(self, entry: RequestLog, status: int | None, client_gone: bool) -> None:
        with self._idle:
            entry.status = status
            entry.client_gone = client_gone
            entry.finished_at = time.monotonic()
            self._busy -= 1
            self._idle.notify_all()

    def _decide_post(
        self, entry: RequestLog, key: str | None, signature: str | None, raw: bytes
    ) -> tuple[_Reply, dict[str, Any] | None]:
        """Consume the next fault and decide the reply; apply the batch when that is due."""
        body = _loads(raw)
        expected = hmac.new(self._secret, raw, hashlib.sha256).hexdigest()
        if signature is None:
            signature_problem: str | None = "the X-Signature header is required"
        elif not hmac.compare_digest(expected, signature.strip().lower()):
            signature_problem = "X-Signature does not match the body"
        else:
            signature_problem = None
        with self._lock:
            entry.key = key
            entry.signature_ok = signature_problem is None
            if isinstance(body, dict) and isinstance(body.get("batch_id"), str):
                entry.batch_id = body["batch_id"]
            fault = entry.fault = self._faults.popleft() if self._faults else None

            match fault:
                case ServerError(status=status):
                    reply = _Reply(status, {"message": f"injected fault: {status}"})
                case TooMany() as too_many:
                    header = too_many.header
                    extra = () if header is None else (("Retry-After", header),)
                    reply = _Reply(429, {"message": "injected fault: too many requests"}, extra)
                case Slow(seconds=seconds, applies=False):
                    reply = _Reply(503, {"message": "injected fault: too slow"}, delay=seconds)
                case DropBefore():
                    reply = _Reply(None)
                case Reject422(message=message):
                    reply = _Reply(422, {"message": message})
                case _:
                    reply = self._process(entry, key, signature_problem, body)
                    match fault:
                        case DropAfter():
                            reply = _Reply(None)
                        case Slow(seconds=seconds):
                            reply = replace(reply, delay=seconds)
                        case DuplicateAck() if reply.status in (201, 409):
                            receipt = self._receipts[cast(str, key)]
                            reply = _Reply(200, {"receipt_id": receipt, "batch_id": entry.batch_id})
            entry.status = reply.status
            return reply, body if isinstance(body, dict) else None

    def _process(
        self, entry: RequestLog, key: str | None, signature_problem: str | None, body: Any
    ) -> _Reply:
        """What the platform does with a request when nothing goes wrong (lock held)."""
        if signature_problem is not None:
            return _Reply(401, {"message": signature_problem})
        if not key:
            return _Reply(400, {"message": "the Idempotency-Key header is required"})
        try:
            batch = _validate(body)
        except _Invalid as exc:
            return _Reply(422, {"message": str(exc)})
        if key in self._applied:
            entry.receipt_id = self._receipts[key]
            entry.body_matches_applied = self._applied[key] == batch
            return _Reply(
                409,
                {
                    "message": f"Idempotency-Key {key} was already accepted",
                    "receipt_id": self._receipts[key],
                },
            )
        self._receipt_seq += 1
        receipt = f"rcpt-{self._receipt_seq:06d}"
        self._applied[key] = batch
        self._receipts[key] = receipt
        self._applications[key] += 1
        entry.applied = True
        entry.receipt_id = receipt
        return _Reply(
            201,
            {
                "receipt_id": receipt,
                "batch_id": batch["batch_id"],
                "records": len(batch["records"]),
            },
        )

    def _listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "idempotency_key": key,
                    "receipt_id": self._receipts[key],
                    "batch_id": body["batch_id"],
                    "year": body["year"],
                    "revision": body["revision"],
                    "supersedes": body["supersedes"],
                    "records": len(body["records"]),
                }
                for key, body in self._applied.items()
            ]

    def _notify(self, entry: RequestLog, body: dict[str, Any] | None) -> None:
        if self._on_request is not None:
            with self._lock:
                snapshot = replace(entry)
            self._on_request(snapshot, body)


# --- HTTP plumbing ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that can reset a connection and close all of them on stop."""

    daemon_threads = True  # a handler never keeps the process alive
    allow_reuse_address = True  # the demo can be restarted on the same port at once

    def __init__(self, address: tuple[str, int], platform: FakePlatform) -> None:
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


# --- The expected shape -----------------------------------------------------------------------

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_USCC = re.compile(r"^[0-9A-Z]{18}$")


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON


_NOT_JSON = object()


def _validate(body: Any) -> dict[str, Any]:
    """The batch if `body` has the expected shape; otherwise _Invalid naming the first problem.

    Unknown extra fields are allowed (a newer client may send more); missing or mistyped ones
    are not, nor duplicate institutions within a batch.
    """
    if body is _NOT_JSON:
        raise _Invalid("the body is not JSON (UTF-8)")
    if not isinstance(body, dict):
        raise _Invalid("the body must be a JSON object")
    _text(body, "batch_id")
    district = _text(body, "district_code")
    if not re.fullmatch(r"\d{6}", district):
        raise _Invalid("district_code: expected 6 digits")
    _integer(body, "year", low=1990, high=2200)
    _text(body, "scale")
    _integer(body, "revision", low=1)
    supersedes = _field(body, "supersedes")
    if not isinstance(supersedes, list) or not all(isinstance(s, str) and s for s in supersedes):
        raise _Invalid("supersedes: expected a list of batch ids (empty if none)")
    by = _field(body, "evaluated_by")
    if not isinstance(by, dict):
        raise _Invalid("evaluated_by: expected an object with name and uscc")
    _text(by, "name", "evaluated_by.")
    _uscc(by, "evaluated_by.")
    _day(body, "evaluated_on")
    _text(body, "chain_hash")
    records = _field(body, "records")
    if not isinstance(records, list):
        raise _Invalid("records: expected a list")
    seen: set[str] = set()
    for i, record in enumerate(records):
        where = f"records[{i}]."
        if not isinstance(record, dict):
            raise _Invalid(f"records[{i}]: expected an object")
        uscc = _uscc(record, where)
        if uscc in seen:
            raise _Invalid(f"{where}uscc: {uscc} appears twice in the batch")
        seen.add(uscc)
        _text(record, "name", where)
        _text(record, "licence_no", where)
        score = _field(record, "score", where)
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise _Invalid(f"{where}score: expected a number")
        _text(record, "grade", where)
        if not isinstance(_field(record, "vetoed", where), bool):
            raise _Invalid(f"{where}vetoed: expected true or false")
        if _day(record, "valid_from", where) > _day(record, "valid_to", where):
            raise _Invalid(f"{where}valid_to: before valid_from")
    return body


def _field(obj: Mapping[str, Any], name: str, where: str = "") -> Any:
    if name not in obj:
        raise _Invalid(f"{where}{name}: missing")
    return obj[name]


def _text(obj: Mapping[str, Any], name: str, where: str = "") -> str:
    value = _field(obj, name, where)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"{where}{name}: expected a non-empty string")
    return value


def _integer(obj: Mapping[str, Any], name: str, *, low: int, high: int | None = None) -> int:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{name}: expected an integer")
    if value < low or (high is not None and value > high):
        raise _Invalid(f"{name}: {value} is out of range")
    return value


def _uscc(obj: Mapping[str, Any], where: str) -> str:
    value = _field(obj, "uscc", where)
    if not isinstance(value, str) or not _USCC.fullmatch(value):
        raise _Invalid(f"{where}uscc: expected an 18-character unified social credit code")
    return value


def _day(obj: Mapping[str, Any], name: str, where: str = "") -> date:
    value = _field(obj, name, where)
    try:
        if isinstance(value, str) and _DATE.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise _Invalid(f"{where}{name}: expected a date YYYY-MM-DD")


# --- By hand ----------------------------------------------------------------------------------


def _printer(show: int) -> Callable[[RequestLog, dict[str, Any] | None], None]:
    """Print each request as it is answered: one line, then the batch's first `show` records."""
    out = threading.Lock()

    def emit(lines: Iterable[str]) -> None:
        with out:
            for line in lines:
                print(line, flush=True)

    def lines(entry: RequestLog, body: dict[str, Any] | None) -> Iterator[str]:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        answer = "dropped, no answer" if entry.status is None else str(entry.status)
        parts = [stamp, entry.method, entry.path]
        if entry.method == "POST":
            parts.append(f"key={entry.key}")
            parts.append("signature ok" if entry.signature_ok else "SIGNATURE BAD")
            if entry.fault is not None:
                parts.append(f"fault={entry.fault.label}")
        parts.append(f"-> {answer}")
        if entry.receipt_id:
            parts.append(f"receipt={entry.receipt_id}")
        if entry.applied:
            parts.append("APPLIED")
        if entry.body_matches_applied is False:
            parts.append("(BODY DIFFERS FROM THE APPLIED ONE)")
        yield "  ".join(parts)
        if body is None or not entry.applied:
            return
        records = body.get("records", [])
        yield (
            f"    {body.get('year')} revision {body.get('revision')}  "
            f"batch {body.get('batch_id')}  {len(records)} records  "
            f"by {body.get('evaluated_by', {}).get('name')}  on {body.get('evaluated_on')}"
            + (f"  supersedes {', '.join(body['supersedes'])}" if body.get("supersedes") else "")
        )
        for record in records[:show]:
            yield (
                f"    {record['uscc']}  {record['grade']:>2}  {record['score']!s:>5}"
                f"{'  vetoed' if record['vetoed'] else ''}  {record['name']}"
            )
        if len(records) > show:
            yield f"    … and {len(records) - show} more"

    return lambda entry, body: emit(list(lines(entry, body)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_platform",
        description="Run the fake 双随机、一公开 platform until Ctrl-C, printing what it receives.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100, help="0 picks a free port")
    parser.add_argument("--secret", required=True, help="the shared CREDIT_PLATFORM_SECRET")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=parse_fault,
        metavar="FAULT",
        help="a fault for the next request, in order (repeat the option): 500 (any 5xx), "
        "429[:SECONDS], slow:SECONDS[:applies], drop-before, drop-after, duplicate-ack, "
        "422[:MESSAGE]",
    )
    parser.add_argument("--show", type=int, default=10, help="records printed per batch")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or kill: stop cleanly, no traceback
        signal.signal(signum, lambda *_: stop.set())
    platform = FakePlatform(
        args.secret, host=args.host, port=args.port, on_request=_printer(args.show)
    )
    try:
        platform.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    platform.script(*args.fault)
    print(f"fake platform listening on {platform.url}  (POST {ENDPOINT})", flush=True)
    print(f"  export CREDIT_PLATFORM_URL={platform.url}", flush=True)
    print(f"  export CREDIT_PLATFORM_SECRET={args.secret}", flush=True)
    if args.fault:
        print("  scripted faults: " + ", ".join(f.label for f in args.fault), flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        platform.stop()
    applied = platform.applied
    print(
        f"stopped: {len(applied)} batches, {sum(len(b['records']) for b in applied.values())} "
        "records applied",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
