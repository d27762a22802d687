"""Deliver the outbox to the city's "双随机、一公开" platform: every batch once, through faults.

The platform is reached through `service.sharing.platform` (one small interface; what each
answer means is listed there).

Exactly once, through crashes: a batch stays `pending` until an answer says it arrived, and
every retry sends the same bytes under the same Idempotency-Key, so a batch that reached the
platform before a crash is answered 409 on the next run and marked delivered, never applied
twice. Every attempt is logged; one found still `sending` at start-up was cut off by a crash
and is marked `interrupted`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, select, update

from service.core.clock import now
from service.core.database import writing
from service.core.errors import NotConfigured
from service.core.settings import Settings
from service.core.tables import deliveries, delivery_attempts
from service.sharing.platform import Answer, HttpPlatform, Platform


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, at least what Retry-After asks, per run bounded."""

    attempts: int = 8  # per batch and run; a batch left pending is tried again next run
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return max(backoff, retry_after or 0.0)


@dataclass
class RunReport:
    delivered: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Everything that was queued is delivered."""
        return not self.dead and not self.pending


def run(
    engine: Engine,
    platform: Platform,
    *,
    year: int | None = None,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    progress: Callable[[str, Answer], None] | None = None,
) -> RunReport:
    """Send every pending batch (of `year`, or all) until delivered, dead, or out of attempts."""
    rng = rng or random.Random()
    with writing(engine) as conn:  # attempts cut off by a crash of an earlier run
        conn.execute(
            update(delivery_attempts)
            .where(delivery_attempts.c.outcome == "sending")
            .values(outcome="interrupted", detail="the sending process stopped mid-attempt")
        )
        query = (
            select(deliveries.c.batch_id, deliveries.c.body)
            .where(deliveries.c.state == "pending")
            .order_by(deliveries.c.year, deliveries.c.revision, deliveries.c.batch_no)
        )
        if year is not None:
            query = query.where(deliveries.c.year == year)
        pending = [(r.batch_id, r.body.encode("utf-8")) for r in conn.execute(query)]
    report = RunReport()
    for key, body in pending:
        state = _deliver(engine, platform, key, body, policy, sleep, rng, progress)
        {"delivered": report.delivered, "dead": report.dead}.get(state, report.pending).append(key)
    return report


def _deliver(
    engine: Engine,
    platform: Platform,
    key: str,
    body: bytes,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    rng: random.Random,
    progress: Callable[[str, Answer], None] | None,
) -> str:
    for attempt in range(1, policy.attempts + 1):
        with writing(engine) as conn:
            state = conn.scalar(select(deliveries.c.state).where(deliveries.c.batch_id == key))
            if state != "pending":  # another run got there first
                return str(state)
            attempt_id = conn.execute(
                delivery_attempts.insert().values(batch_id=key, started_at=now(), outcome="sending")
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                update(deliveries)
                .where(deliveries.c.batch_id == key)
                .values(attempts=deliveries.c.attempts + 1)
            )
        answer = platform.send(body=body, key=key)
        wait = policy.delay(attempt, answer.retry_after, rng)
        state = _record(engine, key, attempt_id, answer, wait)
        if progress:
            progress(key, answer)
        if state != "pending":
            return state
        if attempt < policy.attempts:
            sleep(wait)
    return "pending"


def _record(engine: Engine, key: str, attempt_id: int, answer: Answer, wait: float) -> str:
    """Log the attempt's outcome and move the batch on; returns the batch's new state."""
    finished = now()
    if answer.outcome in ("delivered", "duplicate"):
        values = {"state": "delivered", "receipt_id": answer.receipt_id, "delivered_at": finished}
    elif answer.outcome == "rejected":
        values = {"state": "dead", "last_error": answer.detail}
    else:
        values = {
            "last_error": answer.detail,
            "next_attempt_at": finished + timedelta(seconds=wait),
        }
    with writing(engine) as conn:
        conn.execute(
            update(delivery_attempts)
            .where(delivery_attempts.c.id == attempt_id)
            .values(
                outcome=answer.outcome,
                finished_at=finished,
                http_status=answer.status,
                detail=answer.detail[:2000],
            )
        )
        conn.execute(update(deliveries).where(deliveries.c.batch_id == key).values(**values))
    return str(values.get("state", "pending"))


def deliver(
    engine: Engine,
    settings: Settings,
    *,
    year: int | None = None,
    progress: Callable[[str, Answer], None] | None = None,
) -> RunReport:
    """One delivery run with the configured platform, whose client is closed however it ends."""
    platform, policy = from_settings(settings)
    with platform:
        return run(engine, platform, year=year, policy=policy, progress=progress)


def from_settings(settings: Settings) -> tuple[HttpPlatform, RetryPolicy]:
    """The configured platform (CREDIT_PLATFORM_URL, CREDIT_PLATFORM_SECRET) and retry policy."""
    if not settings.platform_url or settings.platform_secret is None:
        raise NotConfigured(
            "set CREDIT_PLATFORM_URL and CREDIT_PLATFORM_SECRET to share with the city platform"
        )
    platform = HttpPlatform(
        settings.platform_url,
        settings.platform_secret.get_secret_value(),
        timeout=settings.platform_timeout,
    )
    return platform, RetryPolicy(
        attempts=settings.platform_attempts, base=settings.platform_backoff
    )
