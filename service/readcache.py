"""Reads served from memory until the next commit anywhere (SQLite only).

A rating lookup, and the key that asks for it, would otherwise each cost a database
transaction in the thread pool: several times the cost of the request itself. On SQLite,
`PRAGMA data_version` on a connection of its own says, in microseconds and without waiting for
a lock, whether any other connection (of this process or another) has committed since it was
last asked; when one has, everything cached is dropped. So a revoked key, a publication or a
correction is seen by the very next request, as without the cache. On PostgreSQL there is no
such check, and nothing is cached.

Used from the event loop's thread only, so it needs no lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Hashable
from typing import Any

MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 2**20
"""Bounds on what is kept: past either, everything is dropped and kept afresh."""


class ReadCache:
    def __init__(self, database_url: str) -> None:
        path = database_url.removeprefix("sqlite:///")
        self._conn: sqlite3.Connection | None = None
        if database_url.startswith("sqlite:///") and path and path != ":memory:":
            self._conn = sqlite3.connect(
                path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
        self._version: int | None = None
        self._entries: dict[Hashable, Any] = {}
        self._bytes = 0

    def generation(self) -> int | None:
        """The data version, after dropping every entry if it changed; None: no caching."""
        if self._conn is None:
            return None
        # fetchall, not fetchone: the statement must finish, or it holds a read transaction
        version: int = self._conn.execute("PRAGMA data_version").fetchall()[0][0]
        if version != self._version:
            self._drop()
            self._version = version
        return version

    def get(self, key: Hashable) -> Any:
        return self._entries.get(key)

    def put(self, generation: int | None, key: Hashable, value: Any, size: int = 0) -> None:
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

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
