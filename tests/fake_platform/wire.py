"""What the platform checks in a request before it applies a batch: signature and body shape.

The wire format of issue 4 (see the package's docstring) in one place, apart from the server's
state and its HTTP plumbing, so the checks read as the format's specification: the HMAC of the
exact body bytes, then the batch's fields, the first problem named in the 422's message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

ENDPOINT = "/api/credit-ratings"


def _signature_problem(secret: bytes, raw: bytes, signature: str | None) -> str | None:
    """Why `signature` (the X-Signature header) does not sign `raw` with `secret`; None if it
    does: the hex HMAC-SHA256 of the exact body bytes, compared in constant time."""
    expected = hmac.new(secret, raw, hashlib.sha256).hexdigest()
    if signature is None:
        return "the X-Signature header is required"
    if not hmac.compare_digest(expected, signature.strip().lower()):
        return "X-Signature does not match the body"
    return None


class _Invalid(ValueError):
    """The body is not of the expected shape; the message names the field."""


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
