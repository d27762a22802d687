"""The log the fake platform keeps of every request: what it saw, and what it did about it.

Apart from the platform so that both its decisions (`platform`) and its HTTP plumbing
(`server`) can name an entry without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .faults import Fault


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
