"""Yearly snapshots: what a year's rating was, as stored, and the ways to read it.

A snapshot records the inputs' digest, the rules' version and hash, the scale, and every
institution's score, grade and explanation. A year has revisions: drafts, then one published
result, then corrections, each a new revision that supersedes the last published one; nothing
is ever edited or deleted. Computing and publishing are in `service.ratings.publishing`, the
hashes that prove nothing was altered in `service.ratings.integrity`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, func, select

from scoring.explain import Explanation
from scoring.explain_parts import Explainer
from service.core.errors import NotFound
from service.core.tables import snapshot_rows, snapshots


@dataclass(frozen=True)
class Snapshot:
    id: int
    year: int
    revision: int
    status: str
    scale: str
    ruleset_version: str
    rules_hash: str
    input_digest: str
    content_hash: str
    created_at: datetime
    created_by: str
    supersedes: int | None
    reason: str | None
    published_at: datetime | None
    published_by: str | None
    chain_seq: int | None
    prev_hash: str | None
    chain_hash: str | None
    signature: str | None = None  # Ed25519, of the chain hash (None: unsigned)
    key_fingerprint: str | None = None  # of the key that signed it
    not_rated: str | None = None  # JSON: the closed institutions listed as not rated
    explanation_parts: str | None = None  # JSON: what its explanations share (None: stored whole)


def as_dict(s: Snapshot) -> dict[str, Any]:
    return {f: getattr(s, f) for f in Snapshot.__dataclass_fields__}


def _snapshot(row: Any) -> Snapshot:
    return Snapshot(**{f: row._mapping[f] for f in Snapshot.__dataclass_fields__})


def get(conn: Connection, year: int, revision: int) -> Snapshot:
    row = conn.execute(
        select(snapshots).where(snapshots.c.year == year, snapshots.c.revision == revision)
    ).first()
    if row is None:
        raise NotFound(f"no revision {revision} of {year}")
    return _snapshot(row)


def _latest(conn: Connection, *, year: int, status: str) -> Any:
    return conn.execute(
        select(snapshots)
        .where(snapshots.c.year == year, snapshots.c.status == status)
        .order_by(snapshots.c.revision.desc())
        .limit(1)
    ).first()


def latest_draft(conn: Connection, *, year: int) -> Snapshot:
    row = _latest(conn, year=year, status="draft")
    if row is None:
        raise NotFound(f"no draft for {year}: compute one first (POST /v1/ratings/{year})")
    return _snapshot(row)


def published(conn: Connection, *, year: int, required: bool = True) -> Snapshot | None:
    """The year's official result: its latest published revision."""
    row = _latest(conn, year=year, status="published")
    if row is None:
        if required:
            raise NotFound(f"{year} has no published rating")
        return None
    return _snapshot(row)


def revisions(conn: Connection, *, year: int) -> list[Snapshot]:
    rows = conn.execute(
        select(snapshots).where(snapshots.c.year == year).order_by(snapshots.c.revision)
    )
    return [_snapshot(r) for r in rows]


def rows_of(conn: Connection, snapshot: Snapshot) -> list[dict[str, Any]]:
    result = conn.execute(
        select(snapshot_rows)
        .where(snapshot_rows.c.snapshot_id == snapshot.id)
        .order_by(snapshot_rows.c.score.desc(), snapshot_rows.c.uscc)
    )
    return [dict(r._mapping) for r in result]


GRADE_COLUMNS = (
    "uscc",
    "name",
    "licence_no",
    "score",
    "grade",
    "vetoed",
    "vetoes",
    "points",
    "status",
)
"""A row's columns but its explanation: what a whole year's answer, the city platform's
batches and the published years kept in memory are made from (the explanations are most of a
snapshot's bytes)."""


def grades_of(conn: Connection, snapshot: Snapshot) -> list[dict[str, Any]]:
    """The snapshot's rows without their explanations, best score first (then by uscc): the
    fast path to a whole year, read as tuples."""
    result = conn.execute(
        select(*snapshot_rows.c[GRADE_COLUMNS])
        .where(snapshot_rows.c.snapshot_id == snapshot.id)
        .order_by(snapshot_rows.c.score.desc(), snapshot_rows.c.uscc)
    )
    return [dict(zip(GRADE_COLUMNS, row, strict=True)) for row in result]


def row_of(conn: Connection, snapshot: Snapshot, uscc: str) -> dict[str, Any]:
    row = conn.execute(
        select(snapshot_rows).where(
            snapshot_rows.c.snapshot_id == snapshot.id, snapshot_rows.c.uscc == uscc
        )
    ).first()
    if row is None:
        raise NotFound(f"{uscc} is not in revision {snapshot.revision} of {snapshot.year}")
    return dict(row._mapping)


def explained(snapshot: Snapshot, row: Mapping[str, Any]) -> Explanation:
    """A stored row's explanation, whichever way its snapshot stores it: in parts (the parts
    every explanation shares in the snapshot, the institution's own in the row:
    `scoring.explain_parts`), or whole (snapshots stored before migration 0007)."""
    if snapshot.explanation_parts is None:
        return Explanation.model_validate_json(row["explanation"])
    return explainer(snapshot.explanation_parts).explanation(row, row["explanation"])


@lru_cache(maxsize=16)
def explainer(shared: str) -> Explainer:
    """The `Explainer` of a snapshot's shared explanation parts: one per snapshot, whose
    pieces (made once for each points kept) serve every read of it."""
    return Explainer(shared)


def history(conn: Connection, *, uscc: str) -> list[dict[str, Any]]:
    """The institution's grade in each year's official (latest published) revision."""
    latest = (
        select(snapshots.c.year, func.max(snapshots.c.revision).label("revision"))
        .where(snapshots.c.status == "published")
        .group_by(snapshots.c.year)
        .subquery()
    )
    result = conn.execute(
        select(
            snapshots.c.year,
            snapshots.c.revision,
            snapshots.c.scale,
            snapshot_rows.c.score,
            snapshot_rows.c.grade,
            snapshot_rows.c.vetoed,
        )
        .join(
            latest,
            (snapshots.c.year == latest.c.year) & (snapshots.c.revision == latest.c.revision),
        )
        .join(snapshot_rows, snapshot_rows.c.snapshot_id == snapshots.c.id)
        .where(snapshot_rows.c.uscc == uscc)
        .order_by(snapshots.c.year)
    )
    return [dict(r._mapping) for r in result]


def every(conn: Connection) -> list[Snapshot]:
    return [_snapshot(r) for r in conn.execute(select(snapshots).order_by(snapshots.c.id))]
