"""The faults the fake platform can be scripted to commit, and their command-line spelling.

Kept apart from the server so that a test reads as a list of what goes wrong (`ERROR_500`,
`TooMany(0.05)`, `DROP_AFTER`, …) and the demo's `--fault` option shares the same names.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

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
