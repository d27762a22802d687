"""The city platform, behind one small interface, and its default wire format.

`Platform.send(body, key) -> Answer` is all the delivery run needs, so the network is
swappable (as httpx does with transports): the tests put a real HTTP server of their own
behind `HttpPlatform`, or any object with `send`. The answers mean:

    200/201 with a receipt_id   delivered
    409                          this key was already accepted: delivered
    other 4xx                    rejected: not retried; the batch is dead, with the message
    429, 5xx, timeout, dropped   retried, with exponential backoff and jitter, honouring
    connection                   Retry-After (capped: see `delivery.RetryPolicy.max_wait`)

An attempt is bounded whatever the platform does: httpx's `timeout` bounds each step
(connecting, sending, waiting for the answer's head, each wait for more of its body), and the
whole body must have come within `timeout` seconds of the head, so a platform dripping a byte
at a time cannot hold a run: an attempt lasts at most a few times `timeout`. Only the first
`MAX_ANSWER` bytes of an answer are read: a receipt and a message are all it carries.

The wire format is described in docs/sharing.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol

import httpx

Outcome = Literal["delivered", "duplicate", "rejected", "retry"]

MAX_ANSWER = 64 * 1024
"""Bytes of an answer read at most; the rest is never read."""

_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


@dataclass(frozen=True)
class Answer:
    """What one attempt to send a batch came to."""

    outcome: Outcome
    status: int | None = None
    receipt_id: str | None = None
    detail: str = ""
    retry_after: float | None = None  # seconds the platform asked us to wait


class Platform(Protocol):
    """Anything that can send one batch's exact bytes under its idempotency key."""

    def send(self, *, body: bytes, key: str) -> Answer: ...


def signature(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the exact body bytes: the X-Signature header."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class HttpPlatform:
    """The default wire format: POST {url}/api/credit-ratings, signed, with Idempotency-Key."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/api/credit-ratings"
        self.secret = secret
        self.timeout = timeout
        self.client = httpx.Client(timeout=timeout, transport=transport)

    def send(self, *, body: bytes, key: str) -> Answer:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": key,
            "X-Signature": signature(body, self.secret),
        }
        try:
            with self.client.stream(
                "POST", self.endpoint, content=body, headers=headers
            ) as streamed:
                deadline = time.monotonic() + self.timeout
                content = bytearray()
                for chunk in streamed.iter_bytes():
                    content += chunk
                    if len(content) >= MAX_ANSWER:
                        del content[MAX_ANSWER:]
                        break
                    if time.monotonic() > deadline:
                        return Answer(
                            "retry",
                            streamed.status_code,
                            detail=f"timed out: the answer took over {self.timeout:g} s",
                        )
                response = httpx.Response(
                    streamed.status_code,
                    headers=[(k, v) for k, v in streamed.headers.items() if k not in _FRAMING],
                    content=bytes(content),
                    request=streamed.request,
                )
        except httpx.TimeoutException as exc:
            return Answer("retry", detail=f"timed out: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return Answer("retry", detail=f"connection failed: {type(exc).__name__}: {exc}")
        return classify(response)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> HttpPlatform:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def classify(response: httpx.Response) -> Answer:
    """The meaning of the platform's answer (see the module docstring)."""
    status = response.status_code
    message = _message(response)
    if status in (200, 201):
        receipt = _field(response, "receipt_id")
        if receipt:
            return Answer("delivered", status, receipt, message)
        return Answer("retry", status, detail=f"{status} without a receipt_id: {message}")
    if status == 409:
        return Answer("duplicate", status, _field(response, "receipt_id"), message)
    if status == 429 or status >= 500:
        return Answer("retry", status, detail=message, retry_after=_retry_after(response))
    return Answer("rejected", status, detail=message)


def _field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return None
    return str(value) if value else None


def _message(response: httpx.Response) -> str:
    text = _field(response, "message") or _field(response, "detail") or response.text
    return f"HTTP {response.status_code}: {text[:500]}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
