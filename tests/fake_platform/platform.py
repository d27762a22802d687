"""The fake platform itself: its state, the faults it has been scripted, and its decisions.

One object a test starts, scripts and inspects (`FakePlatform`), keeping the log of what it saw
(`request_log`). It decides every answer under one lock and leaves the I/O to `server`.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import Any, cast

from .faults import (
    DropAfter,
    DropBefore,
    DuplicateAck,
    Fault,
    Reject422,
    ServerError,
    Slow,
    TooMany,
)
from .request_log import RequestLog
from .server import _Reply, _Server
from .wire import _Invalid, _loads, _signature_problem, _validate


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
        signature_problem = _signature_problem(self._secret, raw, signature)
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
