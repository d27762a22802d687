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

The modules, by concern: `faults` (what can go wrong, and its spelling on the command line),
`wire` (the signature and body checks of the format above), `platform` (`FakePlatform`: state,
scripting, decisions), `request_log` (what it saw and did), `server` (the HTTP plumbing),
`__main__` (the demo).
"""

from __future__ import annotations

from .faults import (
    DROP_AFTER,
    DROP_BEFORE,
    DUPLICATE_ACK,
    ERROR_500,
    REJECT_422,
    SLOW,
    TOO_MANY,
    DropAfter,
    DropBefore,
    DuplicateAck,
    Fault,
    Reject422,
    ServerError,
    Slow,
    TooMany,
    parse_fault,
)
from .platform import FakePlatform
from .request_log import RequestLog
from .server import MAX_BODY
from .wire import ENDPOINT

__all__ = [
    "DROP_AFTER",
    "DROP_BEFORE",
    "DUPLICATE_ACK",
    "ENDPOINT",
    "ERROR_500",
    "MAX_BODY",
    "REJECT_422",
    "SLOW",
    "TOO_MANY",
    "DropAfter",
    "DropBefore",
    "DuplicateAck",
    "FakePlatform",
    "Fault",
    "Reject422",
    "RequestLog",
    "ServerError",
    "Slow",
    "TooMany",
    "parse_fault",
]
