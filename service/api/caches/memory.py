"""Reads served from memory until the next commit anywhere.

A rating lookup, and the key that asks for it, would otherwise each cost a database
transaction in the thread pool: many times the cost of the request itself. So each request
first asks the database, cheaply and without a thread, whether anything was committed since
the last request asked (by this process or any other); when something was, everything kept is
dropped. A revoked key, a publication or a correction is therefore seen by the very next
request, as without the cache.

- SQLite: `PRAGMA data_version` on a connection of its own: microseconds, no lock; it changes
  when any other connection commits.
- PostgreSQL: `pg_current_snapshot()` on an asynchronous connection of its own (one round trip
  on the event loop, no thread), shared by the requests that ask meanwhile (below). The
  snapshot is `xmin:xmax:xip_list`; a transaction that
  writes is given an id, which is in `xip_list` until it ends or, given later, raises `xmax`
  when it ends, so no write can commit between two readings without changing the text.
  (Transactions of other databases of the same server change it too: that only drops answers
  sooner.) Each new connection starts a new series of versions, as ids may be handed out again
  after a crash or a failover. A standby (in recovery) does not list running transactions, so
  there, as when the server cannot be asked within `CHECK_TIMEOUT_S`, nothing is kept or
  served from memory.

Readings of PostgreSQL are shared: one is in flight at a time, and every request that asks
while it is waits for the next one, which begins after they all asked and is then the answer of
them all. So a request is only ever answered with a reading begun after it asked (a commit
completed before it arrived is always seen), and under load a round trip serves a whole batch of
requests instead of each waiting its turn on the one connection.

Used from the event loop's thread only (one loop: a connection and the readings belong to it).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Hashable
from contextlib import suppress
from typing import Any

import psycopg

MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 2**20
"""Bounds on what is kept: past either, everything is dropped and kept afresh."""
RECONNECT_AFTER_S = 1.0
"""After PostgreSQL could not be asked, how long requests go uncached before it is tried again."""
CHECK_TIMEOUT_S = 1.0
"""How long a request waits for PostgreSQL's answer (connecting included) before going uncached."""
CHECK = "SELECT pg_current_snapshot()::text, pg_is_in_recovery()"
LOG = logging.getLogger(__name__)


class ReadCache:
    def __init__(self, database_url: str) -> None:
        self._sqlite: sqlite3.Connection | None = None
        self._postgres_url: str | None = None
        self._postgres: psycopg.AsyncConnection[Any] | None = None
        self._postgres_failed_at = float("-inf")
        self._next: asyncio.Future[Hashable | None] | None = None  # asked for, not yet begun
        self._reader: asyncio.Task[None] | None = None  # the one reading in flight, and those after
        self._connections = 0  # numbers each connection's series of versions
        path = database_url.removeprefix("sqlite:///")
        if database_url.startswith("sqlite:///") and path and path != ":memory:":
            self._sqlite = sqlite3.connect(
                path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
        elif database_url.startswith(("postgresql://", "postgresql+psycopg://")):
            self._postgres_url = "postgresql://" + database_url.partition("://")[2]
        self._version: Hashable | None = None
        self._entries: dict[Hashable, Any] = {}
        self._bytes = 0

    async def generation(self) -> Hashable | None:
        """The data version, read after this call began (every entry dropped if it changed);
        None: keep nothing."""
        if self._sqlite is not None:
            # fetchall, not fetchone: the statement must finish, or it holds a read transaction
            version: int = self._sqlite.execute("PRAGMA data_version").fetchall()[0][0]
            self._seen(version)
            return version
        if self._postgres_url is None:
            self._seen(None)
            return None
        if self._next is None:  # the first to ask since the last reading began
            self._next = asyncio.get_running_loop().create_future()
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_in_turn(self._postgres_url))
        # Shielded: a request given up (its client gone) does not cancel the others' reading.
        return await asyncio.shield(self._next)

    def _seen(self, version: Hashable | None) -> None:
        """A reading's answer, in the order read: a new version drops everything kept."""
        if version != self._version:  # to None too; while None, nothing is ever kept
            self._drop()
        self._version = version

    async def _read_in_turn(self, url: str) -> None:
        """Readings of PostgreSQL, one at a time, while anyone waits for one: each answers
        those who asked before it began (`_next` is taken, and a new one started by whoever asks
        next, only at that moment)."""
        while self._next is not None:
            waiting, self._next = self._next, None
            try:
                version = await self._read_postgres_version(url)
            except asyncio.CancelledError:  # the service stops: no answer from memory
                for future in (waiting, self._next):
                    if future is not None and not future.done():
                        future.set_result(None)
                self._next = None
                raise
            except Exception:  # not a database error: nothing from memory, and said in the log
                LOG.exception("the commit check failed")
                self._postgres_failed_at = time.monotonic()
                await self._close_postgres()
                version = None
            self._seen(version)
            if not waiting.done():
                waiting.set_result(version)

    async def _read_postgres_version(self, url: str) -> tuple[int, str] | None:
        failed_lately = time.monotonic() - self._postgres_failed_at < RECONNECT_AFTER_S
        if self._postgres is None and failed_lately:
            return None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                if self._postgres is None:
                    self._postgres = await psycopg.AsyncConnection.connect(url, autocommit=True)
                    self._connections += 1
                cursor = await self._postgres.execute(CHECK)
                snapshot, in_recovery = await cursor.fetchone() or (None, True)
        except (psycopg.Error, TimeoutError):
            self._postgres_failed_at = time.monotonic()
            await self._close_postgres()
            return None
        if in_recovery or snapshot is None:
            return None
        return self._connections, str(snapshot)

    def get(self, key: Hashable) -> Any:
        return self._entries.get(key)

    def put(self, generation: Hashable | None, key: Hashable, value: Any, size: int = 0) -> None:
        """Keep `value` (read after `generation` was taken) unless a commit was seen since.

        `size`: the bytes `value` holds, when that is more than a few."""
        if generation is None or generation != self._version or size > MAX_BYTES:
            return
        if len(self._entries) >= MAX_ENTRIES or self._bytes + size > MAX_BYTES:
            self._drop()
        self._entries[key] = value
        self._bytes += size

    def _drop(self) -> None:
        self._entries.clear()
        self._bytes = 0

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader
        await self._close_postgres()

    async def _close_postgres(self) -> None:
        connection, self._postgres = self._postgres, None
        if connection is not None:
            with suppress(psycopg.Error):
                await connection.close()
