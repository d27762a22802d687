"""The sharing job against a real (fake) platform on loopback: every record, every batch once.

Each test publishes the sample district with small batches (16 institutions in batches of 5
make 4 batches), points the job's real HTTP client at `tests.fake_platform`, scripts faults,
and checks what the platform applied against what the outbox says.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from scoring.shipped import load_rules
from service.cli import app
from service.core.database import make_engine, reading, writing
from service.core.errors import Conflict, NotConfigured
from service.core.migrate import upgrade
from service.core.settings import Settings, SharingConfig
from service.core.tables import deliveries, delivery_attempts
from service.ratings import publishing, snapshots
from service.records.importing import import_files
from service.sharing import delivery, outbox
from service.sharing.delivery import RetryPolicy
from service.sharing.platform import Answer, HttpPlatform, classify
from tests.conftest import SAMPLE_FILES, Keys
from tests.fake_platform import (
    DROP_AFTER,
    DROP_BEFORE,
    DUPLICATE_ACK,
    ERROR_500,
    FakePlatform,
    Fault,
    Reject422,
    Slow,
    TooMany,
)
from tests.servers import ROOT, running_server, running_service, serve_command

SECRET = "test-secret"
CONFIG = SharingConfig(batch_size=5)
FAST = RetryPolicy(attempts=6, base=0.001, cap=0.01)
TIMEOUT = 0.5  # the client's; Slow faults wait longer than this


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform(SECRET) as fake:
        yield fake


def publish(engine: Engine, year: int = 2023, reason: str | None = None) -> snapshots.Snapshot:
    with writing(engine) as conn:
        publishing.compute_draft(conn, rules=load_rules(), year=year, scale="four", by="tests")
    with writing(engine) as conn:
        return publishing.publish(
            conn, year=year, revision=None, reason=reason, by="tests", sharing=CONFIG
        )


def share(
    engine: Engine,
    fake: FakePlatform,
    *,
    policy: RetryPolicy = FAST,
    sleeps: list[float] | None = None,
) -> delivery.RunReport:
    client = HttpPlatform(fake.url, SECRET, timeout=TIMEOUT)
    try:
        return delivery.run(
            engine,
            client,
            policy=policy,
            sleep=(sleeps.append if sleeps is not None else lambda _: None),
            rng=random.Random(4),
        )
    finally:
        client.close()


def batches(engine: Engine) -> list[dict[str, object]]:
    with reading(engine) as conn:
        return outbox.status(conn)


def attempts(engine: Engine) -> list[dict[str, object]]:
    with reading(engine) as conn:
        rows = conn.execute(select(delivery_attempts).order_by(delivery_attempts.c.id))
        return [dict(r._mapping) for r in rows]


def assert_exactly_once(engine: Engine, fake: FakePlatform, *, institutions: int = 16) -> None:
    """Every record reached the platform, each batch was applied once, nothing is in flight."""
    queued = batches(engine)
    assert {b["state"] for b in queued} == {"delivered"}
    assert set(fake.applied) == {b["batch_id"] for b in queued}
    assert set(fake.applications.values()) == {1}
    per_revision: dict[object, set[str]] = {}
    for body in fake.applied.values():
        per_revision.setdefault(body["revision"], set()).update(r["uscc"] for r in body["records"])
    assert all(len(codes) == institutions for codes in per_revision.values())
    assert not [a for a in attempts(engine) if a["outcome"] == "sending"]
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(attempts(engine)) == len(posts), "every request the platform saw is a logged attempt"


def test_publishing_queues_the_delivery_in_the_same_transaction(loaded: Engine) -> None:
    published = publish(loaded)
    queued = batches(loaded)
    assert [(b["batch_no"], b["records"], b["state"]) for b in queued] == [
        (1, 5, "pending"),
        (2, 5, "pending"),
        (3, 5, "pending"),
        (4, 1, "pending"),
    ]
    assert all(str(b["batch_id"]).startswith("120111-2023-r1-") for b in queued)
    # A publish that fails queues nothing: the Conflict rolls the whole transaction back.
    with pytest.raises(Conflict), writing(loaded) as conn:
        publishing.publish(conn, year=2023, revision=None, reason=None, by="t", sharing=CONFIG)
    assert len(batches(loaded)) == 4
    assert published.chain_hash


def test_a_clean_run_delivers_every_record_once_with_names_intact(
    loaded: Engine, platform: FakePlatform
) -> None:
    publish(loaded)
    report = share(loaded, platform)
    assert report.complete and len(report.delivered) == 4
    assert_exactly_once(loaded, platform)
    names = {r["name"] for r in platform.records()}
    assert "天津市西青区博文培训学校" in names
    body = next(iter(platform.applied.values()))
    assert body["district_code"] == "120111"
    assert body["evaluated_by"]["name"] == "天津市西青区教育局"
    assert body["supersedes"] == []
    valid_from = date.fromisoformat(body["evaluated_on"])
    assert {r["valid_from"] for r in body["records"]} == {valid_from.isoformat()}
    assert {r["valid_to"] for r in body["records"]} == {outbox.valid_until(valid_from).isoformat()}
    assert outbox.valid_until(date(2024, 2, 29)) == date(2025, 2, 27)
    assert outbox.valid_until(date(2023, 6, 1)) == date(2024, 5, 31)
    assert all(b["receipt_id"] for b in batches(loaded))


def test_every_transient_fault_is_retried_until_delivered(
    loaded: Engine, platform: FakePlatform
) -> None:
    publish(loaded)
    platform.script(
        ERROR_500,
        TooMany(0.05),
        Slow(TIMEOUT * 3),
        DROP_BEFORE,
        DROP_AFTER,
        Slow(TIMEOUT * 3, applies=True),
        DUPLICATE_ACK,
    )
    sleeps: list[float] = []
    patient = RetryPolicy(attempts=10, base=0.001, cap=0.01)  # all seven faults hit batch 1
    report = share(loaded, platform, policy=patient, sleeps=sleeps)
    assert report.complete
    assert_exactly_once(loaded, platform)
    assert sleeps[1] >= 0.05, "Retry-After was not honoured"
    outcomes = [a["outcome"] for a in attempts(loaded)]
    # Six faults cost batch 1 a retry each; the duplicate acknowledgement then delivers it
    # (it was stored by the drop-after), and batches 2-4 go through at once.
    assert outcomes == ["retry"] * 6 + ["delivered"] * 4


def test_a_rejection_is_not_retried_and_can_be_requeued(
    loaded: Engine, platform: FakePlatform
) -> None:
    publish(loaded)
    platform.script(Reject422("records[0].grade: 不是有效等级"))
    report = share(loaded, platform)
    assert not report.complete and len(report.dead) == 1 and len(report.delivered) == 3
    dead = next(b for b in batches(loaded) if b["state"] == "dead")
    assert dead["attempts"] == 1
    assert "不是有效等级" in str(dead["last_error"])
    with writing(loaded) as conn:
        outbox.requeue(conn, batch=str(dead["batch_id"]))
        with pytest.raises(Conflict):
            outbox.requeue(conn, batch=str(dead["batch_id"]))  # pending now, not dead
    assert share(loaded, platform).complete
    assert_exactly_once(loaded, platform)


def test_a_correction_is_a_new_delivery_naming_the_batches_it_supersedes(
    loaded: Engine, platform: FakePlatform
) -> None:
    publish(loaded)
    share(loaded, platform)
    first = {b["batch_id"] for b in batches(loaded)}
    publish(loaded, reason="复核更正")
    assert share(loaded, platform).complete
    corrections = [b for b in platform.applied.values() if b["revision"] == 2]
    assert len(corrections) == 4
    assert all(set(b["supersedes"]) == first for b in corrections)
    assert_exactly_once(loaded, platform)


def test_a_batch_that_keeps_failing_stays_pending_for_the_next_run(
    loaded: Engine, platform: FakePlatform
) -> None:
    publish(loaded)
    platform.script(*[ERROR_500] * 3)
    report = share(loaded, platform, policy=RetryPolicy(attempts=3, base=0.001, cap=0.001))
    assert len(report.pending) == 1 and not report.dead
    pending = next(b for b in batches(loaded) if b["state"] == "pending")
    assert pending["attempts"] == 3 and "500" in str(pending["last_error"])
    assert share(loaded, platform).complete
    assert_exactly_once(loaded, platform)


def test_backoff_grows_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=8, base=1.0, cap=30.0)
    rng = random.Random(1)
    assert all(0 <= policy.delay(n, None, rng) <= min(30.0, 2 ** (n - 1)) for n in range(1, 9))
    assert policy.delay(1, 7.5, rng) >= 7.5
    capped = RetryPolicy(attempts=8, base=1000.0, cap=10_000.0, max_wait=5.0)
    assert all(policy.delay(n, None, rng) <= 30.0 for n in range(1, 9))
    assert all(0 <= capped.delay(n, 86_400, rng) == 5.0 for n in range(1, 9))
    assert all(0 <= capped.delay(n, None, rng) <= 5.0 for n in range(1, 9))


def platform_settings(fake: FakePlatform, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "platform_url": fake.url,
        "platform_secret": SECRET,
        "platform_timeout": TIMEOUT,
        "platform_backoff": 0.001,
        **overrides,
    }
    return Settings.model_validate(values)


def test_retry_after_is_capped_by_platform_max_wait(loaded: Engine, platform: FakePlatform) -> None:
    publish(loaded)
    platform.script(TooMany(86400))  # a day: a hostile or broken platform
    client, policy = delivery.from_settings(platform_settings(platform, platform_max_wait=300))
    assert policy.max_wait == 300
    sleeps: list[float] = []
    with client:
        report = delivery.run(loaded, client, policy=policy, sleep=sleeps.append)
    assert report.complete
    assert sleeps == [300.0], "the wait Retry-After asked for was not capped"
    with reading(loaded) as conn:
        first = conn.execute(
            select(deliveries.c.created_at, deliveries.c.next_attempt_at).order_by(
                deliveries.c.batch_no
            )
        ).first()
    assert first is not None and first.next_attempt_at is not None
    assert first.next_attempt_at - first.created_at < timedelta(hours=1)
    assert_exactly_once(loaded, platform)


def test_a_background_run_stops_after_the_attempt_in_flight(
    loaded: Engine, platform: FakePlatform
) -> None:
    publish(loaded)
    platform.script(Slow(TIMEOUT * 6))  # the client gives up after TIMEOUT
    background = delivery.Background(loaded, platform_settings(platform, platform_backoff=60))
    run, started = background.start(2023)
    assert started and background.start(2023) == (run, False)
    with pytest.raises(Conflict):
        background.start(None)
    wait_for(lambda: len(platform.requests) == 1)
    asked = time.monotonic()
    assert background.close(grace=TIMEOUT * 4), "the run outlived its attempt's timeout"
    assert time.monotonic() - asked < TIMEOUT * 4
    assert run.state == "stopped" and run.finished_at is not None and run.attempts == 1
    assert run.report.pending and not run.report.delivered
    assert [a["outcome"] for a in attempts(loaded)] == ["retry"]
    assert {b["state"] for b in batches(loaded)} == {"pending"}
    with pytest.raises(Conflict):  # closed: shutting down
        background.start(2023)
    platform.wait_idle()
    assert share(loaded, platform).complete
    assert_exactly_once(loaded, platform)


def test_two_background_runs_at_once_deliver_each_batch_once(
    loaded: Engine, platform: FakePlatform
) -> None:
    """Two processes' runs (one each, as with several workers) over the same outbox."""
    publish(loaded)
    platform.script(Slow(TIMEOUT * 2, applies=True), DROP_AFTER, ERROR_500, DUPLICATE_ACK)
    settings = platform_settings(platform)
    runners = [delivery.Background(loaded, settings) for _ in range(2)]
    runs = [runner.start(2023)[0] for runner in runners]
    assert all(runner.join(30) for runner in runners)
    assert [run.state for run in runs] == ["finished", "finished"]
    platform.wait_idle()
    for _ in range(3):  # runs are bounded; whatever one left pending, the next one sends
        if share(loaded, platform).complete:
            break
    assert_exactly_once(loaded, platform)


def test_a_background_run_that_fails_says_so(loaded: Engine, platform: FakePlatform) -> None:
    publish(loaded)
    broken = delivery.Background(
        make_engine("sqlite:////nonexistent/folder/db.sqlite"), platform_settings(platform)
    )
    run, _ = broken.start()
    assert broken.join(10)
    assert run.state == "failed" and run.error and run.finished_at is not None
    with pytest.raises(NotConfigured):  # checked at once, not in the thread
        delivery.Background(loaded, Settings()).start()


class Dripping(socketserver.BaseRequestHandler):
    """A platform that answers 201 and then a byte of its body every 0.1 s, for ever."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 1000000\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(1000):
                self.request.sendall(b" ")
                time.sleep(0.1)


def test_a_platform_dripping_its_answer_cannot_hold_an_attempt() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Dripping)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.socket.getsockname()[1]
        with HttpPlatform(f"http://127.0.0.1:{port}", SECRET, timeout=TIMEOUT) as client:
            asked = time.monotonic()
            answer = client.send(body=b"{}", key="k")
            assert time.monotonic() - asked < TIMEOUT * 3
        assert answer.outcome == "retry" and "timed out" in answer.detail
    finally:
        server.shutdown()
        server.server_close()


FAULTS = st.sampled_from(
    [
        ERROR_500,
        TooMany(0.01),
        TooMany(None),
        Slow(TIMEOUT * 2),
        Slow(TIMEOUT * 2, applies=True),
        DROP_BEFORE,
        DROP_AFTER,
        DUPLICATE_ACK,
    ]
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(faults=st.lists(FAULTS, max_size=8))
def test_any_sequence_of_faults_ends_with_every_batch_applied_once(
    sharing_engine: Engine, platform: FakePlatform, faults: list[Fault]
) -> None:
    platform.reset()
    with writing(sharing_engine) as conn:  # a fresh outbox for each example
        conn.execute(delivery_attempts.delete())
        conn.execute(deliveries.update().values(state="pending", attempts=0, receipt_id=None))
    platform.script(*faults)
    for _ in range(3):  # runs are bounded; each retries a batch up to FAST.attempts times
        if share(sharing_engine, platform).complete:
            break
    assert_exactly_once(sharing_engine, platform)


@pytest.fixture
def sharing_engine(tmp_path: Path) -> Iterator[Engine]:
    """A published year on SQLite, for the many examples of the random fault sequences."""
    engine = make_engine(f"sqlite:///{tmp_path / 'delivery.db'}")
    upgrade(engine)
    import_files(engine, SAMPLE_FILES, rules=load_rules(), by="tests")
    publish(engine)
    yield engine
    engine.dispose()


def test_sigkill_mid_send_loses_nothing_and_applies_nothing_twice(
    loaded: Engine, database_url: str, platform: FakePlatform
) -> None:
    # Killed while the platform holds its reply: once after it stored the batch, once before.
    for revision, fault in enumerate((Slow(3, applies=True), Slow(3)), start=1):
        publish(loaded, reason=None if revision == 1 else "复核更正")
        seen = len(platform.requests)
        platform.script(fault)
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.share_worker", database_url, platform.url, SECRET],
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while len(platform.requests) == seen and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # the request is in; the worker is waiting for the answer
        worker.send_signal(signal.SIGKILL)
        assert worker.wait() == -signal.SIGKILL
        with reading(loaded) as conn:
            in_flight = conn.scalar(
                select(func.count())
                .select_from(delivery_attempts)
                .where(delivery_attempts.c.outcome == "sending")
            )
        assert in_flight == 1, "the killed attempt was logged before the send"
        assert share(loaded, platform).complete
        assert "interrupted" in [a["outcome"] for a in attempts(loaded)]
        assert_exactly_once(loaded, platform)


def test_answers_are_classified_as_the_wire_format_says() -> None:
    import httpx

    def answer(status: int, **kwargs: object) -> Answer:
        return classify(httpx.Response(status, **kwargs))  # type: ignore[arg-type]

    assert answer(201, json={"receipt_id": "R1"}).outcome == "delivered"
    assert answer(200, json={}).outcome == "retry"  # a success without a receipt proves nothing
    assert answer(409, json={"receipt_id": "R1"}).outcome == "duplicate"
    assert answer(400, json={"message": "bad"}).outcome == "rejected"
    assert answer(422, json={"message": "bad"}).detail.endswith("bad")
    too_many = answer(429, headers={"Retry-After": "3"})
    assert too_many.outcome == "retry" and too_many.retry_after == 3.0
    assert answer(503, text="down").outcome == "retry"


def test_the_share_command_delivers_shows_status_and_requeues(
    loaded: Engine, database_url: str, platform: FakePlatform
) -> None:
    publish(loaded)
    env = {
        "CREDIT_DATABASE_URL": database_url,
        "CREDIT_PLATFORM_URL": platform.url,
        "CREDIT_PLATFORM_SECRET": SECRET,
        "CREDIT_PLATFORM_BACKOFF": "0.001",
    }
    runner = CliRunner()
    platform.script(Reject422("证照编号格式不符"))
    failed = runner.invoke(app, ["share", "--year", "2023"], env=env)
    assert failed.exit_code == 1
    assert "delivered 3, dead 1" in failed.stdout
    status = runner.invoke(app, ["share", "--status"], env=env)
    assert status.exit_code == 0 and "dead" in status.stdout and "证照编号格式不符" in status.stdout
    dead = next(b for b in batches(loaded) if b["state"] == "dead")
    assert runner.invoke(app, ["share", "--retry", str(dead["batch_id"])], env=env).exit_code == 0
    done = runner.invoke(app, ["share"], env=env)
    assert done.exit_code == 0 and "delivered 1, dead 0, still pending 0" in done.stdout
    assert_exactly_once(loaded, platform)
    unconfigured = runner.invoke(app, ["share"], env={"CREDIT_DATABASE_URL": database_url})
    assert unconfigured.exit_code == 1 and "CREDIT_PLATFORM_URL" in unconfigured.stderr


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_supervisors_read_deliveries_and_the_sharing_role_runs_them_in_the_background(
    loaded: Engine, database_url: str, api_keys: Keys, platform: FakePlatform
) -> None:
    publish(loaded)
    env = {
        "CREDIT_PLATFORM_URL": platform.url,
        "CREDIT_PLATFORM_SECRET": SECRET,
        "CREDIT_PLATFORM_TIMEOUT": "2",
        "CREDIT_PLATFORM_BACKOFF": "0.001",
    }
    platform.script(Slow(4))  # batch 1's first attempt: 2 s until the client gives up
    sharing, supervisor = api_keys.header("sharing"), api_keys.header("supervisor")
    with running_service(database_url, extra_env=env) as base, httpx.Client(base_url=base) as api:
        listed = api.get("/v1/deliveries?year=2023", headers=supervisor)
        assert listed.status_code == 200
        assert [b["state"] for b in listed.json()] == ["pending"] * 4
        assert api.get("/v1/deliveries", headers=api_keys.header("analyst")).status_code == 403
        assert api.post("/v1/deliveries/run", headers=api_keys.header("analyst")).status_code == 403
        asked = time.monotonic()
        run = api.post("/v1/deliveries/run?year=2023", headers=sharing)
        assert time.monotonic() - asked < 1.5, "the request waited for the slow platform"
        assert run.status_code == 202, run.text
        assert run.headers["Location"] == "/v1/deliveries?year=2023"
        started = run.json()
        assert started["started"] is True and started["year"] == 2023
        assert started["progress"] == "/v1/deliveries?year=2023"
        # While it runs: the same year joins the run under way, another one is refused.
        again = api.post("/v1/deliveries/run?year=2023", headers=supervisor)
        assert again.status_code == 202 and again.json()["run_id"] == started["run_id"]
        assert again.json()["started"] is False
        everything = api.post("/v1/deliveries/run", headers=sharing)
        assert everything.status_code == 409, everything.text
        assert started["run_id"] in everything.json()["detail"]
        seen: list[list[tuple[str, int]]] = []

        def delivered() -> bool:
            batches = api.get(run.headers["Location"], headers=supervisor).json()
            seen.append([(b["state"], b["attempts"]) for b in batches])
            return {b["state"] for b in batches} == {"delivered"}

        wait_for(delivered)
        assert ("pending", 1) in [batch1 for batch1, *_ in seen], "progress shows as it goes on"
        assert seen[-1][0] == ("delivered", 2)
        # Finished: the next POST starts a new run, which finds nothing left to send.
        after = api.post("/v1/deliveries/run", headers=sharing)
        assert after.status_code == 202 and after.json()["started"] is True
        assert after.headers["Location"] == "/v1/deliveries"
    platform.wait_idle()
    assert_exactly_once(loaded, platform)


def test_shutting_the_service_down_stops_a_run_waiting_on_retry_after(
    loaded: Engine, database_url: str, api_keys: Keys, platform: FakePlatform, tmp_path: Path
) -> None:
    publish(loaded)
    env = {
        **os.environ,
        "CREDIT_DATABASE_URL": database_url,
        "CREDIT_HOST": "127.0.0.1",
        "CREDIT_PLATFORM_URL": platform.url,
        "CREDIT_PLATFORM_SECRET": SECRET,
    }
    platform.script(TooMany(86400))  # capped at the default 300 s: still far too long to wait
    log = tmp_path / "serve.log"
    with running_server("service", serve_command(), env=env, log=log, port_env="CREDIT_PORT") as s:
        with httpx.Client(base_url=s.base) as api:
            run = api.post("/v1/deliveries/run", headers=api_keys.header("sharing"))
            assert run.status_code == 202, run.text
        wait_for(lambda: bool(attempts(loaded)) and attempts(loaded)[0]["outcome"] == "retry")
        asked = time.monotonic()
        s.process.terminate()
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
        assert s.process.wait(timeout=8) in (0, -signal.SIGTERM)
        assert time.monotonic() - asked < 5, "the shutdown waited for the run"
    output = log.read_text(encoding="utf-8", errors="replace")
    assert "stopped at shutdown; 4 batches left pending" in output, output
    assert [a["outcome"] for a in attempts(loaded)] == ["retry"], "the run stopped, nothing more"
    assert [(b["state"], b["attempts"]) for b in batches(loaded)] == [("pending", 1)] + [
        ("pending", 0)
    ] * 3
    assert share(loaded, platform).complete  # the next run picks it all up
    assert_exactly_once(loaded, platform)
