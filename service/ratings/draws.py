"""Random-inspection draws (双随机) from a year's published grades, stored write-once and
published whole, so that anyone can rerun one from its record and get the same list.

The sampling itself is `scoring.draw` (a pure function of grades, weights, count and seed);
this module picks the population (the latest published revision of the year, without the
institutions that are closed now: a closed one cannot be inspected; those closed when it was
rated are not in it, being listed as not rated), takes the seed from
`secrets` unless one is given, and records everything a rerun needs: the population with
grades, the weights, the count, the seed, the procedure's name and the snapshot it came from
(year, revision, content hash). A database trigger refuses any change or deletion of a draw.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from scoring.draw import PROCEDURE, DrawError, Weight, draw, format_weights
from scoring.inputs import InstitutionStatus
from service.core.errors import InvalidInput, NotFound
from service.core.tables import draws, institutions
from service.ratings import snapshots

JSON_COLUMNS = ("weights", "population", "excluded", "quotas", "drawn")


def new_seed() -> str:
    """A seed from the operating system's cryptographic source: 128 bits as 32 hex digits."""
    return secrets.token_hex(16)


def make_draw(
    conn: Connection,
    *,
    year: int,
    count: int,
    weights: Mapping[str, Weight],
    seed: str | None,
    by: str,
    at: datetime,
) -> dict[str, Any]:
    """Draw `count` institutions from `year`'s published grades and store the record."""
    snap = snapshots.published(conn, year=year)
    assert snap is not None
    graded = [(r["uscc"], r["grade"]) for r in snapshots.rows_of(conn, snap)]
    closed = set(
        conn.scalars(
            select(institutions.c.uscc).where(
                institutions.c.status == InstitutionStatus.closed.value
            )
        )
    )
    listed_closed = [r["uscc"] for r in json.loads(snap.not_rated or "[]")]  # not rated
    population = sorted(p for p in graded if p[0] not in closed)
    excluded = sorted({*listed_closed, *(u for u, _ in graded if u in closed)})
    chosen = seed if seed is not None else new_seed()
    try:
        result = draw(population, weights=weights, count=count, seed=chosen)
    except DrawError as exc:
        raise InvalidInput(f"cannot draw from {year}: {exc}") from None
    values = {
        "year": year,
        "revision": snap.revision,
        "snapshot_hash": snap.content_hash,
        "scale": snap.scale,
        "procedure": PROCEDURE,
        "count": count,
        "seed": chosen,
        "seed_source": "given" if seed is not None else "secrets",
        "weights": json.dumps(format_weights(weights), ensure_ascii=False),
        "population": json.dumps([list(p) for p in population]),
        "excluded": json.dumps(excluded),
        "quotas": json.dumps(result.quotas),
        "drawn": json.dumps(
            [{"uscc": d.uscc, "grade": d.grade, "key": d.key} for d in result.drawn]
        ),
        "created_at": at,
        "created_by": by,
    }
    draw_id = conn.execute(draws.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
    return get(conn, draw_id)


def _record(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    for column in JSON_COLUMNS:
        record[column] = json.loads(record[column])
    return record


def get(conn: Connection, draw_id: int) -> dict[str, Any]:
    row = conn.execute(select(draws).where(draws.c.id == draw_id)).first()
    if row is None:
        raise NotFound(f"no draw {draw_id}")
    return _record(row)


def listing(conn: Connection, *, year: int | None) -> list[dict[str, Any]]:
    """Draws, newest first; of one grades' year with `year`."""
    query = select(draws).order_by(draws.c.id.desc())
    if year is not None:
        query = query.where(draws.c.year == year)
    return [_record(r) for r in conn.execute(query)]
