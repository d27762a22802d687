"""The outbox of deliveries to the city platform, filled when a snapshot is published.

`enqueue` runs inside the publishing transaction, so a published year always has its delivery
queued and an unpublished one never does. Each batch's body is built once and stored: every
retry sends the very same bytes under the same Idempotency-Key (the batch id), which is what
lets the platform apply a batch once however often it is sent.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, select, update

from service.core.clock import BEIJING
from service.core.errors import Conflict, NotFound
from service.core.settings import SharingConfig
from service.core.tables import deliveries


class Published(Protocol):
    """What the outbox needs of a published snapshot (`service.ratings.snapshots.Snapshot`)."""

    @property
    def id(self) -> int: ...
    @property
    def year(self) -> int: ...
    @property
    def revision(self) -> int: ...
    @property
    def scale(self) -> str: ...
    @property
    def supersedes(self) -> int | None: ...
    @property
    def published_at(self) -> datetime | None: ...
    @property
    def chain_hash(self) -> str | None: ...


def batch_id(config: SharingConfig, snapshot: Published, number: int) -> str:
    """Readable, unique and stable: district, year, revision, batch, and the chain hash."""
    tag = hashlib.sha256(f"{snapshot.chain_hash}:{number}".encode()).hexdigest()[:12]
    return f"{config.district_code}-{snapshot.year}-r{snapshot.revision}-b{number:04d}-{tag}"


def valid_until(valid_from: date) -> date:
    """A grade stands for a year from its publication, until the next rating replaces it."""
    try:
        anniversary = valid_from.replace(year=valid_from.year + 1)
    except ValueError:  # 29 February
        anniversary = valid_from.replace(year=valid_from.year + 1, day=28)
    return anniversary - timedelta(days=1)


def enqueue(
    conn: Connection,
    *,
    snapshot: Published,
    rows: list[dict[str, Any]],
    config: SharingConfig,
    now: datetime,
) -> list[str]:
    """Queue the published snapshot's records in batches; returns the new batch ids."""
    superseded = (
        list(
            conn.scalars(
                select(deliveries.c.batch_id)
                .where(deliveries.c.year == snapshot.year)
                .where(deliveries.c.revision == snapshot.supersedes)
                .order_by(deliveries.c.batch_no)
            )
        )
        if snapshot.supersedes is not None
        else []
    )
    assert snapshot.published_at is not None
    evaluated_on = snapshot.published_at.astimezone(BEIJING).date()
    records = [
        {
            "uscc": r["uscc"],
            "name": r["name"],
            "licence_no": r["licence_no"],
            "score": r["score"],
            "grade": r["grade"],
            "vetoed": bool(r["vetoed"]),
            "valid_from": evaluated_on.isoformat(),
            "valid_to": valid_until(evaluated_on).isoformat(),
        }
        for r in sorted(rows, key=lambda r: r["uscc"])
    ]
    size = config.batch_size
    chunks = [records[i : i + size] for i in range(0, len(records), size)] or [[]]
    ids = []
    for number, chunk in enumerate(chunks, start=1):
        key = batch_id(config, snapshot, number)
        body = {
            "batch_id": key,
            "district_code": config.district_code,
            "year": snapshot.year,
            "scale": snapshot.scale,
            "revision": snapshot.revision,
            "supersedes": superseded,
            "evaluated_by": {"name": config.bureau_name, "uscc": config.bureau_uscc},
            "evaluated_on": evaluated_on.isoformat(),
            "chain_hash": snapshot.chain_hash,
            "records": chunk,
        }
        conn.execute(
            deliveries.insert().values(
                batch_id=key,
                snapshot_id=snapshot.id,
                year=snapshot.year,
                revision=snapshot.revision,
                batch_no=number,
                batch_count=len(chunks),
                records=len(chunk),
                body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                state="pending",
                attempts=0,
                created_at=now,
            )
        )
        ids.append(key)
    return ids


def status(conn: Connection, *, year: int | None = None) -> list[dict[str, Any]]:
    """Every batch with its state, attempts, last error and receipt, oldest first."""
    query = select(
        deliveries.c.batch_id,
        deliveries.c.year,
        deliveries.c.revision,
        deliveries.c.batch_no,
        deliveries.c.batch_count,
        deliveries.c.records,
        deliveries.c.state,
        deliveries.c.attempts,
        deliveries.c.last_error,
        deliveries.c.receipt_id,
        deliveries.c.created_at,
        deliveries.c.delivered_at,
    ).order_by(deliveries.c.year, deliveries.c.revision, deliveries.c.batch_no)
    if year is not None:
        query = query.where(deliveries.c.year == year)
    return [dict(r._mapping) for r in conn.execute(query)]


def requeue(conn: Connection, *, batch: str) -> None:
    """Put a dead batch back in the queue (after the platform's complaint was dealt with)."""
    state = conn.scalar(select(deliveries.c.state).where(deliveries.c.batch_id == batch))
    if state is None:
        raise NotFound(f"no batch {batch}")
    if state != "dead":
        raise Conflict(f"batch {batch} is {state}; only a dead batch can be retried")
    conn.execute(
        update(deliveries)
        .where(deliveries.c.batch_id == batch)
        .values(state="pending", next_attempt_at=None)
    )
