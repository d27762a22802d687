"""Objections (异议) to a published rating, heard only within its publicity period (公示期).

An objection is recorded against an institution and, where it names one, a finding of the
year (who objects, when, what they say). A supervisor resolves it once: rejected, with a
reason; or upheld, when the named finding is revoked with the objection as its reason and a
correction draft of the year is computed in the same transaction, its reason naming the
objection, ready to publish as a correction (`publishing.publish` keeps that reason). So a
revoked finding never lacks its correction revision, even when resolutions race: each one
holds the publishing lock (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite).

Nothing is deleted, and a resolved objection is final: database triggers refuse both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, select

from scoring.inputs import FindingStatus
from scoring.rules import RuleSet
from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.settings import Settings
from service.core.tables import objections
from service.ratings import publishing, snapshots
from service.ratings.publicity import publicity
from service.ratings.snapshots import Snapshot
from service.records import storage


class ObjectionStatus(StrEnum):
    filed = "filed"
    upheld = "upheld"
    rejected = "rejected"


@dataclass(frozen=True)
class Resolution:
    """A resolved objection, and the correction draft computed when it was upheld."""

    objection: dict[str, Any]
    correction: Snapshot | None


def file(
    conn: Connection,
    *,
    settings: Settings,
    year: int,
    uscc: str,
    finding_id: str | None,
    filed_by: str,
    text: str,
    by: str,
    at: datetime,
) -> dict[str, Any]:
    """Record an objection to `year`'s latest published revision, if its period is open.

    Conflict when the period is over (the message gives the deadline, 期限); NotFound for a
    year not published, an institution not in it, or an unknown finding; InvalidInput for a
    finding of another institution or year.
    """
    snap = snapshots.published(conn, year=year)
    assert snap is not None
    period = publicity(snap, settings)
    assert period is not None
    if not period.is_open(at):
        raise Conflict(
            f"the publicity period of {year} (revision {snap.revision}) is over: objections "
            f"were heard until the deadline (期限) {period.deadline}"
        )
    snapshots.row_of(conn, snap, uscc)  # NotFound: not rated in that revision
    if finding_id is not None:
        finding = storage.get_finding(conn, finding_id)
        if finding["uscc"] != uscc:
            raise InvalidInput(f"finding {finding_id} is not against {uscc}")
        if not date(year, 1, 1) <= finding["occurred_on"] <= date(year, 12, 31):
            raise InvalidInput(f"finding {finding_id} is not of {year}")
        if finding["status"] == FindingStatus.revoked:
            raise Conflict(f"finding {finding_id} is already revoked")
    new_id = conn.execute(
        objections.insert().values(
            year=year,
            revision=snap.revision,
            uscc=uscc,
            finding_id=finding_id,
            filed_by=filed_by,
            filed_at=at,
            recorded_by=by,
            text=text,
            status=ObjectionStatus.filed.value,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    return get(conn, new_id)


def resolve(
    conn: Connection,
    *,
    objection_id: int,
    upheld: bool,
    reason: str,
    rules: RuleSet,
    by: str,
    at: datetime,
) -> Resolution:
    """Uphold or reject a filed objection (Conflict if it is already resolved).

    Upheld: its finding (if it names one) is revoked with the objection as the reason, and a
    correction draft of its year is computed with the scale of the published revision; the
    draft's reason names every upheld objection it is the first draft to include.
    """
    if conn.dialect.name == "postgresql":  # one resolution, draft or publish at a time
        conn.execute(select(func.pg_advisory_xact_lock(publishing.PUBLISH_LOCK)))
    current = get(conn, objection_id)
    if current["status"] != ObjectionStatus.filed:
        raise Conflict(f"objection {objection_id} is already {current['status']}")
    correction = None
    if upheld and current["finding_id"] is not None:
        storage.revoke(
            conn,
            finding_id=current["finding_id"],
            by=by,
            reason=f"异议 #{objection_id} 成立：{reason}",
            at=at,
        )
        published = snapshots.published(conn, year=current["year"])
        assert published is not None
        correction = publishing.compute_draft(
            conn,
            rules=rules,
            year=current["year"],
            scale=published.scale,
            by=by,
            reason=_correction_reason(conn, current, published.revision),
        )
    status = ObjectionStatus.upheld if upheld else ObjectionStatus.rejected
    updated = conn.execute(
        objections.update()
        .where(objections.c.id == objection_id, objections.c.status == ObjectionStatus.filed)
        .values(
            status=status.value,
            resolved_by=by,
            resolved_at=at,
            resolution=reason,
            correction_revision=correction.revision if correction else None,
        )
    ).rowcount
    if updated != 1:
        raise Conflict(f"objection {objection_id} was resolved concurrently")
    return Resolution(get(conn, objection_id), correction)


def _correction_reason(conn: Connection, objection: dict[str, Any], published: int) -> str:
    """异议 #…、#… 成立 (撤销 F-…): this objection and those upheld since the published
    revision whose drafts are not published yet (the new draft includes them all)."""
    pending = conn.execute(
        select(objections.c.id, objections.c.finding_id)
        .where(
            objections.c.year == objection["year"],
            objections.c.status == ObjectionStatus.upheld,
            objections.c.correction_revision > published,
        )
        .order_by(objections.c.id)
    ).all()
    named = [*((i, f) for i, f in pending), (objection["id"], objection["finding_id"])]
    ids = "、".join(f"#{i}" for i, _ in named)
    revoked = "、".join(f for _, f in named if f)
    return f"异议 {ids} 成立，撤销认定 {revoked}"


@dataclass(frozen=True)
class Correction:
    """An upheld objection and what it changed: the institution's grade in the revision the
    correction superseded and in the published correction (None while it is not published)."""

    objection_id: int
    year: int
    uscc: str
    finding_id: str | None
    draft_revision: int | None
    before_revision: int
    before_grade: str | None  # None: not rated in that revision (a closed institution)
    published_revision: int | None
    after_grade: str | None


def corrections(conn: Connection, *, year: int) -> list[Correction]:
    """Which grades of `year` were corrected after an objection (for the history and the
    public page): each upheld objection, the revision before and the correction that
    published it (the first published revision at or after its draft, which includes it)."""
    published = [s for s in snapshots.revisions(conn, year=year) if s.status == "published"]
    found = []
    for o in listing(conn, year=year, status=ObjectionStatus.upheld):
        draft = o["correction_revision"]
        after = next((s for s in published if draft is not None and s.revision >= draft), None)
        before_revision = after.supersedes if after and after.supersedes else o["revision"]
        before_grade = _grade(conn, snapshots.get(conn, year, before_revision), o["uscc"])
        after_grade = _grade(conn, after, o["uscc"]) if after else None
        found.append(
            Correction(
                objection_id=o["id"],
                year=year,
                uscc=o["uscc"],
                finding_id=o["finding_id"],
                draft_revision=draft,
                before_revision=before_revision,
                before_grade=before_grade,
                published_revision=after.revision if after else None,
                after_grade=after_grade,
            )
        )
    return found


def _grade(conn: Connection, snapshot: snapshots.Snapshot, uscc: str) -> str | None:
    """The institution's grade in `snapshot`, None when the snapshot lists it as not rated."""
    try:
        return str(snapshots.row_of(conn, snapshot, uscc)["grade"])
    except NotFound:
        return None


def get(conn: Connection, objection_id: int) -> dict[str, Any]:
    row = conn.execute(select(objections).where(objections.c.id == objection_id)).first()
    if row is None:
        raise NotFound(f"no objection {objection_id}")
    return dict(row._mapping)


def listing(
    conn: Connection, *, year: int | None, status: ObjectionStatus | None = None
) -> list[dict[str, Any]]:
    """Objections in the order they were filed; of one year, or one status, if given."""
    query = select(objections).order_by(objections.c.id)
    if year is not None:
        query = query.where(objections.c.year == year)
    if status is not None:
        query = query.where(objections.c.status == status.value)
    return [dict(r._mapping) for r in conn.execute(query)]
