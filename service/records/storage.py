"""Institutions and findings in the database: the system of record the ratings are made from.

Imports are all-or-nothing (one transaction, after the scorer's validation of the whole input).
Findings are never deleted: revoking one (an objection upheld, a review) records who, when and
why, and the finding stays on record without counting. Re-importing a finding that is already
stored unchanged is a no-op, so importing the same file twice is safe; the same id with
different content is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import ARRAY, ColumnElement, Connection, String, Table, any_, bindparam, select

from scoring.explain import FINDING_FIELDS, INSTITUTION_FIELDS
from scoring.hashing import canonical_json, sha256_hex
from scoring.inputs import FindingStatus
from service.core.errors import Conflict, NotFound
from service.core.tables import findings, institutions

FINDING_COMPARED = ("uscc", "indicator", "occurred_on", "count", "source", "reference", "note")

MAX_PARAMETERS = 10_000
"""Bound values in one statement, at most. Databases refuse statements with too many: SQLite
more than its build's SQLITE_MAX_VARIABLE_NUMBER (32,766 by default, 250,000 on Debian),
PostgreSQL more than 65,535. An import is stored this many rows at a time: their ids looked
up in one statement (on PostgreSQL as one array parameter), then inserted and updated as many
rows to a statement as fit."""

T = TypeVar("T")


@dataclass(frozen=True)
class ImportSummary:
    institutions_added: int
    institutions_updated: int
    findings_added: int
    findings_unchanged: int
    inspections_added: int = 0  # the inspection register (service.records.inspections)
    inspections_unchanged: int = 0


def frames(conn: Connection, *, year: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored institutions and findings as the engine's normalised frames.

    With `year`, only findings dated in that year are loaded (the others cannot count).
    """
    inst = _frame(conn, select(*institutions.c[INSTITUTION_FIELDS]), INSTITUTION_FIELDS)
    query = select(*findings.c[FINDING_FIELDS])
    if year is not None:
        query = query.where(dated_in(year))
    found = _frame(conn, query, FINDING_FIELDS)
    found["occurred_on"] = pd.to_datetime(found["occurred_on"]).astype("datetime64[ns]")
    found["count"] = found["count"].astype("int64")
    return inst.sort_values("uscc", ignore_index=True), found.sort_values(
        "finding_id", ignore_index=True
    )


def _frame(conn: Connection, query: Any, fields: tuple[str, ...]) -> pd.DataFrame:
    """The query's rows as a frame of object columns (built column by column, from tuples)."""
    rows = conn.execute(query).all()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
    return pd.DataFrame(
        {f: pd.Series(list(c), dtype=object) for f, c in zip(fields, columns, strict=True)},
        columns=list(fields),
    )


def records_of(frame: pd.DataFrame, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows of `frame` as plain dicts of Python values (column by column: many times faster
    than `DataFrame.to_dict("records")` on Arrow-backed text)."""
    columns = [frame[field].tolist() for field in fields]
    return [dict(zip(fields, values, strict=True)) for values in zip(*columns, strict=True)]


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rows_per_statement(table: Table) -> int:
    """How many rows of `table` one statement may carry within `MAX_PARAMETERS`."""
    return max(1, MAX_PARAMETERS // len(table.columns))


def dated_in(year: int) -> ColumnElement[bool]:
    """Findings that occurred in calendar year `year`."""
    return findings.c.occurred_on.between(date(year, 1, 1), date(year, 12, 31))


def finding_id_for(record: dict[str, Any]) -> str:
    """A stable id for a finding imported without one: a digest of its content."""
    content = canonical_json({f: str(record[f]) for f in FINDING_COMPARED}, "ordered")
    return "F-" + sha256_hex(content)[:16]


def finding_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Validated findings as rows to store: dates as dates, and an id for each (a digest of
    its content where the input gave none)."""
    dated = frame.assign(
        occurred_on=pd.to_datetime(frame["occurred_on"]).dt.date,
        count=frame["count"].astype("int64"),
    )
    records = records_of(dated, FINDING_FIELDS)
    for record in records:
        if not record["finding_id"] or str(record["finding_id"]).startswith("#"):
            record["finding_id"] = finding_id_for(record)
    return records


def import_frames(
    conn: Connection,
    *,
    institution_frame: pd.DataFrame | None,
    finding_frame: pd.DataFrame | None,
    by: str,
    at: Any,
) -> ImportSummary:
    """Store validated frames in the caller's transaction; Conflict rolls everything back.

    Frames of any size are stored `MAX_PARAMETERS` rows at a time (looked up, compared,
    written), so no statement carries more values than a database accepts and only one batch
    of rows is held as Python objects; all of it in the caller's one transaction, which any
    error (a Conflict in the last batch too) rolls back whole.
    """
    stamp = {"recorded_at": at, "recorded_by": by}
    added = updated = f_added = f_same = 0
    if institution_frame is not None:
        inserted: set[str] = set()
        for chunk in _slices(institution_frame):
            records = records_of(chunk, INSTITUTION_FIELDS)
            existing = _stored(conn, institutions, [r["uscc"] for r in records], INSTITUTION_FIELDS)
            new_rows, changed = [], []
            for record in records:
                # A key this import already added is new again: the database refuses it, as
                # it would in one statement.
                old = None if record["uscc"] in inserted else existing.get(record["uscc"])
                if old is None:
                    record.update(stamp)  # in place: rows are not copied
                    new_rows.append(record)
                elif old != record:
                    record.update(stamp, key=record["uscc"])
                    changed.append(record)
            _insert(conn, institutions, new_rows)
            for batch in batches(changed, rows_per_statement(institutions)):
                conn.execute(_UPDATE_INSTITUTION, list(batch))
            inserted.update(r["uscc"] for r in new_rows)
            added, updated = added + len(new_rows), updated + len(changed)
    if finding_frame is not None:
        inserted = set()
        for chunk in _slices(finding_frame):
            records = finding_records(chunk)
            stored = _stored(conn, findings, [r["finding_id"] for r in records], FINDING_FIELDS)
            new_findings = []
            for record in records:
                old = None if record["finding_id"] in inserted else stored.get(record["finding_id"])
                if old is None:
                    record.update(stamp)
                    new_findings.append(record)
                elif any(old[f] != record[f] for f in FINDING_COMPARED):
                    raise Conflict(
                        f"finding {record['finding_id']} is already stored with different "
                        "content; findings are never edited: revoke it and record a new one"
                    )
                else:
                    f_same += 1
            _insert(conn, findings, new_findings)
            inserted.update(r["finding_id"] for r in new_findings)
            f_added += len(new_findings)
    return ImportSummary(added, updated, f_added, f_same)


def _slices(frame: pd.DataFrame) -> Iterator[pd.DataFrame]:
    """`frame` in consecutive slices of `MAX_PARAMETERS` rows (none for an empty frame)."""
    for start in range(0, len(frame), MAX_PARAMETERS):
        yield frame.iloc[start : start + MAX_PARAMETERS]


_UPDATE_INSTITUTION = (
    institutions.update()
    .where(institutions.c.uscc == bindparam("key"))
    .values(
        {
            name: bindparam(name)
            for name in (*INSTITUTION_FIELDS, "recorded_at", "recorded_by")
            if name != "uscc"
        }
    )
)


def _stored(
    conn: Connection, table: Table, keys: list[str], fields: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """The stored rows of `table` among `keys` (its primary key's values), by key."""
    [key] = table.primary_key.columns
    at = fields.index(key.name)
    if conn.dialect.name == "postgresql":
        # One array parameter, `= ANY(…)`: psycopg need not rewrite thousands of placeholders.
        among = [key == any_(bindparam("keys", keys, type_=ARRAY(String())))]
    else:
        among = [key.in_(batch) for batch in batches(keys, MAX_PARAMETERS)]
    found: dict[str, dict[str, Any]] = {}
    for condition in among:
        for row in conn.execute(select(*table.c[fields]).where(condition)):
            found[row[at]] = dict(zip(fields, row, strict=True))
    return found


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    for batch in batches(rows, rows_per_statement(table)):
        conn.execute(table.insert(), list(batch))


def revoke(conn: Connection, *, finding_id: str, by: str, reason: str, at: Any) -> dict[str, Any]:
    """Revoke a finding: kept on record, no longer counted; who, when and why are recorded."""
    current = get_finding(conn, finding_id)
    if current["status"] == FindingStatus.revoked:
        raise Conflict(f"finding {finding_id} is already revoked")
    conn.execute(
        findings.update()
        .where(findings.c.finding_id == finding_id)
        .values(
            status=FindingStatus.revoked.value, revoked_at=at, revoked_by=by, revoke_reason=reason
        )
    )
    return get_finding(conn, finding_id)


def get_finding(conn: Connection, finding_id: str) -> dict[str, Any]:
    row = conn.execute(select(findings).where(findings.c.finding_id == finding_id)).first()
    if row is None:
        raise NotFound(f"no finding {finding_id}")
    return dict(row._mapping)


def get_institution(conn: Connection, uscc: str) -> dict[str, Any]:
    row = conn.execute(select(institutions).where(institutions.c.uscc == uscc)).first()
    if row is None:
        raise NotFound(f"no institution {uscc}")
    return dict(row._mapping)


def list_institutions(conn: Connection, *, limit: int, offset: int) -> list[dict[str, Any]]:
    query = select(institutions).order_by(institutions.c.uscc).limit(limit).offset(offset)
    return [dict(r._mapping) for r in conn.execute(query)]


def list_findings(
    conn: Connection,
    *,
    uscc: str | None,
    year: int | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[dict[str, Any]]:
    query = select(findings).order_by(findings.c.occurred_on, findings.c.finding_id)
    if uscc is not None:
        query = query.where(findings.c.uscc == uscc)
    if year is not None:
        query = query.where(dated_in(year))
    if status is not None:
        query = query.where(findings.c.status == status)
    return [dict(r._mapping) for r in conn.execute(query.limit(limit).offset(offset))]


def known_usccs(conn: Connection) -> set[str]:
    return set(conn.scalars(select(institutions.c.uscc)))
