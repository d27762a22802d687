"""The inspection register in the database: stored on import, listed, read back as a frame.

A register row is what happened on a day, so it is never edited or deleted (migration 0004's
triggers refuse both): re-importing a row already stored unchanged is a no-op, so importing
the same file twice is safe, and the same (task, institution) with different content is a
Conflict, like a finding with different content.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select, tuple_

from scoring.inspections import INSPECTION_FIELDS
from service.core.errors import Conflict
from service.core.tables import inspections
from service.records.storage import batches, records_of, rows_per_statement

COMPARED = ("inspected_on", "result", "note")
"""What a stored row must match for a re-import to be the same row."""


def register_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A validated register as rows to store (dates as dates)."""
    dated = frame.assign(inspected_on=pd.to_datetime(frame["inspected_on"]).dt.date)
    return records_of(dated, INSPECTION_FIELDS)


def import_register(conn: Connection, frame: pd.DataFrame, *, by: str, at: Any) -> tuple[int, int]:
    """Store a validated register in the caller's transaction: (added, already on record).

    Conflict (rolling the caller's whole import back) for a row stored with other content.
    """
    records = register_records(frame)
    added = same = 0
    for chunk in batches(records, rows_per_statement(inspections)):
        keys = [(r["task_id"], r["uscc"]) for r in chunk]
        among = tuple_(inspections.c.task_id, inspections.c.uscc).in_(keys)
        stored = {
            (row.task_id, row.uscc): row._mapping
            for row in conn.execute(select(inspections).where(among))
        }
        new = []
        for record in chunk:
            old = stored.get((record["task_id"], record["uscc"]))
            if old is None:
                new.append({**record, "recorded_at": at, "recorded_by": by})
            elif any(old[f] != record[f] for f in COMPARED):
                raise Conflict(
                    f"task {record['task_id']} already records an inspection of "
                    f"{record['uscc']} with different content; the register is never edited"
                )
            else:
                same += 1
        if new:
            conn.execute(inspections.insert(), new)
        added += len(new)
    return added, same


def register_frame(conn: Connection, *, year: int | None = None) -> pd.DataFrame:
    """The stored register as `scoring.inspections` normalises it (optionally one year's)."""
    query = select(*inspections.c[INSPECTION_FIELDS]).order_by(
        inspections.c.inspected_on, inspections.c.task_id, inspections.c.uscc
    )
    if year is not None:
        query = query.where(_dated_in(year))
    frame = pd.DataFrame(
        [dict(r._mapping) for r in conn.execute(query)], columns=list(INSPECTION_FIELDS)
    )
    frame["inspected_on"] = pd.to_datetime(frame["inspected_on"]).astype("datetime64[us]")
    return frame


def known_tasks(conn: Connection) -> pd.DataFrame:
    """Every task on record with its inspection days (`task_id`, `inspected_on`), for checking
    the references of findings (`scoring.inspections.unknown_task_references`)."""
    query = select(inspections.c.task_id, inspections.c.inspected_on).distinct()
    return pd.DataFrame(
        [dict(r._mapping) for r in conn.execute(query)], columns=["task_id", "inspected_on"]
    )


def list_register(
    conn: Connection, *, year: int | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Stored register rows by day, task and credit code, a page at a time."""
    query = select(inspections).order_by(
        inspections.c.inspected_on, inspections.c.task_id, inspections.c.uscc
    )
    if year is not None:
        query = query.where(_dated_in(year))
    return [dict(r._mapping) for r in conn.execute(query.limit(limit).offset(offset))]


def _dated_in(year: int) -> Any:
    return inspections.c.inspected_on.between(date(year, 1, 1), date(year, 12, 31))
