"""Deliver the outbox to the city's "双随机、一公开" platform: every batch once, through faults.

The platform is reached through `service.sharing.platform` (one small interface; what each
answer means is listed there).

Exactly once, through crashes: a batch stays `pending` until an answer says it arrived, and
every retry sends the same bytes under the same Idempotency-Key, so a batch that reached the
platform before a crash is answered 409 on the next run and marked delivered, never applied
twice. Every attempt is logged; one found still `sending` at start-up was cut off by a crash
and is marked `interrupted`.

Bounded: every wait (backoff and Retry-After alike) is capped by `RetryPolicy.max_wait`
(CREDIT_PLATFORM_MAX_WAIT), every attempt by the client's timeout, and a run given a `stop`
event ends at the next wait or attempt once it is set, leaving what it had not delivered
`pending`. `Background` runs deliveries in a thread of their own, one at a time per process,
for the HTTP API, and stops them when the service shuts down.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Engine, select, update

from service.core.clock import now
from service.core.database import writing
from service.core.errors import Conflict, NotConfigured
from service.core.settings import Settings
from service.core.tables import deliveries, delivery_attempts
from service.sharing.platform import Answer, HttpPlatform, Platform


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, at least what Retry-After asks, per run bounded:
    no wait, whatever the platform asks, is longer than `max_wait` seconds."""

    attempts: int = 8  # per batch and run; a batch left pending is tried again next run
    base: float = 1.0
    cap: float = 60.0
    max_wait: float = 300.0  # CREDIT_PLATFORM_MAX_WAIT: the cap on any wait, Retry-After too

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        backoff = rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        return max(0.0, min(self.max_wait, max(backoff, retry_after or 0.0)))


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
    stop: threading.Event | None = None,
) -> RunReport:
    """Send every pending batch (of `year`, or all) until delivered, dead, or out of attempts.

    Once `stop` is set, no new attempt starts and no wait goes on (waits are `stop.wait` when
    `sleep` is left as it is): the run returns with what it had not delivered `pending`.
    """
    rng = rng or random.Random()
    if stop is not None and sleep is time.sleep:
        halt = stop

        def sleep(seconds: float) -> None:
            halt.wait(seconds)

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
        state = _deliver(engine, platform, key, body, policy, sleep, rng, progress, stop)
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
    stop: threading.Event | None,
) -> str:
    for attempt in range(1, policy.attempts + 1):
        if stop is not None and stop.is_set():
            return "pending"
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
    stop: threading.Event | None = None,
) -> RunReport:
    """One delivery run with the configured platform, whose client is closed however it ends."""
    platform, policy = from_settings(settings)
    with platform:
        return run(engine, platform, year=year, policy=policy, progress=progress, stop=stop)


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
        attempts=settings.platform_attempts,
        base=settings.platform_backoff,
        max_wait=settings.platform_max_wait,
    )


log = logging.getLogger(__name__)

RunState = Literal["running", "finished", "stopped", "failed"]


@dataclass
class BackgroundRun:
    """One delivery run in the background, as its thread left it so far."""

    id: str
    year: int | None  # None: every year
    started_at: datetime
    state: RunState = "running"
    finished_at: datetime | None = None
    attempts: int = 0  # answers received so far
    report: RunReport = field(default_factory=RunReport)
    error: str | None = None

    def covers(self, year: int | None) -> bool:
        """Whether this run sends what a run for `year` would."""
        return self.year is None or self.year == year


class Background:
    """Delivery runs in a thread of their own, at most one at a time in this process.

    `start` checks the configuration (NotConfigured at once, not in the thread), then returns
    the new run, or the one already under way when that one covers the year asked
    (`started` False); a run for another year while one is running is a `Conflict`. `close`
    sets the stop event, so the run ends after the attempt in flight (bounded by the client's
    timeout) without waiting out any backoff, and joins the thread for at most `grace`
    seconds. A run cut off harder than that (the thread is a daemon: it never keeps the process
    alive) is like a crash: its batches stay `pending`, and the attempt it had in flight is
    marked `interrupted` by the next run, which sends it again under the same key.
    """

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: BackgroundRun | None = None

    @property
    def current(self) -> BackgroundRun | None:
        """The run under way, or the last one (None before the first)."""
        return self._current

    def start(self, year: int | None = None) -> tuple[BackgroundRun, bool]:
        """The run now sending `year` (or everything), and whether this call started it."""
        with self._lock:
            if self._stop.is_set():
                raise Conflict("the service is shutting down; no delivery run can start")
            running = self._current if self._current and self._current.state == "running" else None
            if running is not None:
                if running.covers(year):
                    return running, False
                raise Conflict(
                    f"a delivery run for {running.year} is under way (run {running.id}); "
                    "start another once it is done"
                )
            platform, policy = from_settings(self.settings)  # NotConfigured, here and now
            current = BackgroundRun(id=uuid.uuid4().hex, year=year, started_at=now())
            thread = threading.Thread(
                target=self._run,
                args=(current, platform, policy),
                name=f"delivery-run-{current.id[:8]}",
                daemon=True,
            )
            self._current, self._thread = current, thread
            thread.start()
            return current, True

    def _run(self, current: BackgroundRun, platform: HttpPlatform, policy: RetryPolicy) -> None:
        def progress(key: str, answer: Answer) -> None:
            current.attempts += 1

        try:
            with platform:
                current.report = run(
                    self.engine,
                    platform,
                    year=current.year,
                    policy=policy,
                    progress=progress,
                    stop=self._stop,
                )
            current.state = "stopped" if self._stop.is_set() else "finished"
        except Exception as exc:  # a thread has no caller: log it, and say so in the run
            log.exception("delivery run %s failed", current.id)
            current.state, current.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            current.finished_at = now()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run under way (if any); True when none is left running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def close(self, grace: float | None = None) -> bool:
        """Stop the run under way and wait for it; True when it ended within `grace` seconds
        (by default the client's timeout and a few seconds more: one attempt in flight)."""
        with self._lock:
            self._stop.set()
        if grace is None:
            grace = self.settings.platform_timeout + 5.0
        ended = self.join(grace)
        current = self._current
        if not ended:
            log.warning("delivery run still sending after %.0f s; abandoned at shutdown", grace)
        elif current is not None and current.state == "stopped":
            log.warning(
                "delivery run %s stopped at shutdown; %d batches left pending for the next run",
                current.id,
                len(current.report.pending),
            )
        return ended
