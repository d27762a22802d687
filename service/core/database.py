"""Database engines and transactions, for SQLite (embedded default) and PostgreSQL.

SQLite is tuned so that concurrent requests never fail with "database is locked": WAL lets
readers run beside a writer, a busy timeout makes a second writer wait instead of failing, and
write transactions start with BEGIN IMMEDIATE so they take the write lock up front (a deferred
transaction that upgrades its lock midway can deadlock and fail at once). synchronous=FULL
makes a committed snapshot survive a power cut, not only a crash.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file's folder is created if needed."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_engine(url: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    pool: dict[str, int] = {}
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # As many connections as the service's thread pool has threads (anyio's default, 40),
        # so no request's thread waits for one: they cost little, and under WAL readers never
        # wait for each other.
        pool = {"pool_size": 40, "max_overflow": 0}
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed whole on success, rolled back whole on any error."""
    with engine.execution_options(write=True).begin() as conn:
        yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction (readers never wait for a writer under WAL)."""
    with engine.begin() as conn:
        yield conn
