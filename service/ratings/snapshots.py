"""Yearly snapshots: compute a draft, publish it, correct it, and prove nothing was altered.

A snapshot stores what a year's rating was: the inputs' digest, the rules' version and hash,
the scale, and every institution's score, grade and explanation. Its `content_hash` covers
exactly that, so computing the same year again from the same inputs and rules gives the same
hash. Published snapshots are chained: each one's `chain_hash` covers the previous one's, so
editing, deleting or reordering any published snapshot breaks every hash after it, and
`verify` names the first snapshot that no longer matches.

Publishing, and numbering a new draft, are serialised (BEGIN IMMEDIATE on SQLite, an advisory
lock on PostgreSQL), and a unique index allows one first publication per year and one
correction per revision, so concurrent publishes of a year give exactly one result and a
Conflict for the others.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from scoring.engine import rate
from scoring.explain import explain_all, input_digest
from scoring.rules import RuleSet
from service.core.tables import snapshot_rows, snapshots
from service.records import storage
from service.sharing import outbox
from service.sharing.outbox import SharingConfig

PUBLISH_LOCK = 19_800_000  # PostgreSQL advisory lock key for publishing


class SnapshotError(Exception):
    """A snapshot request that cannot be honoured."""


class NotFound(SnapshotError):
    pass


class Conflict(SnapshotError):
    pass


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


def _sha256(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


ROW_FIELDS = ("uscc", "name", "licence_no", "score", "grade", "vetoed", "vetoes", "points")


def content_hash(header: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Hash of what was rated and the result: header fields plus every row, in uscc order."""
    ordered = sorted(rows, key=lambda r: r["uscc"])
    return _sha256(
        {
            "year": header["year"],
            "scale": header["scale"],
            "ruleset_version": header["ruleset_version"],
            "rules_hash": header["rules_hash"],
            "input_digest": header["input_digest"],
            "rows": [
                {**{f: r[f] for f in ROW_FIELDS}, "explanation": r["explanation"]} for r in ordered
            ],
        }
    )


def chain_hash(snapshot: dict[str, Any], prev_hash: str) -> str:
    """Hash linking a published snapshot to the one published before it."""
    return _sha256(
        {
            "prev_hash": prev_hash,
            "content_hash": snapshot["content_hash"],
            "year": snapshot["year"],
            "revision": snapshot["revision"],
            "supersedes": snapshot["supersedes"],
            "reason": snapshot["reason"],
            "published_at": _iso(snapshot["published_at"]),
            "published_by": snapshot["published_by"],
        }
    )


GENESIS = "sha256:" + "0" * 64


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite returns naive datetimes; we only ever store UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def now() -> datetime:
    return datetime.now(UTC)


def rate_rows(
    institutions: Any, findings: Any, rules: RuleSet, year: int, scale: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Rate a year and shape it as a snapshot header and rows (nothing stored)."""
    force = rules.in_force(year, scale)
    rating = rate(institutions, findings, force)
    explanations = explain_all(institutions, findings, force, year)
    codes = [i.code for i in force.indicators]
    rows = [
        {
            "uscc": r["uscc"],
            "name": r["name"],
            "licence_no": licence,
            "score": int(r["score"]),
            "grade": str(r["grade"]),
            "vetoed": bool(r["vetoed"]),
            "vetoes": json.dumps(list(r["vetoes"])),
            "points": json.dumps({c: int(r[c]) for c in codes}),
            "explanation": e.model_dump_json(),
        }
        for r, licence, e in zip(
            rating.to_dict("records"), institutions["licence_no"], explanations, strict=True
        )
    ]
    header = {
        "year": year,
        "scale": force.scale.code,
        "ruleset_version": force.version,
        "rules_hash": force.content_hash,
        "input_digest": input_digest(institutions, findings, year),
    }
    return header, rows


def compute_draft(conn: Connection, *, rules: RuleSet, year: int, scale: str, by: str) -> Snapshot:
    """Rate `year` from the stored institutions and findings and store it as a draft."""
    institutions, findings = storage.frames(conn, year=year)
    header, rows = rate_rows(institutions, findings, rules, year, scale)
    if conn.dialect.name == "postgresql":  # concurrent computes must not pick the same revision
        conn.execute(select(func.pg_advisory_xact_lock(PUBLISH_LOCK)))
    revision = (
        conn.scalar(select(func.max(snapshots.c.revision)).where(snapshots.c.year == year)) or 0
    ) + 1
    snapshot_id = conn.execute(
        snapshots.insert().values(
            **header,
            revision=revision,
            status="draft",
            content_hash=content_hash(header, rows),
            created_at=now(),
            created_by=by,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    if rows:
        conn.execute(snapshot_rows.insert(), [{**r, "snapshot_id": snapshot_id} for r in rows])
    return get(conn, year=year, revision=revision)


def publish(
    conn: Connection,
    *,
    year: int,
    revision: int | None,
    reason: str | None,
    by: str,
    sharing: SharingConfig | None = None,
) -> Snapshot:
    """Make a draft the year's official result; a second publication is a correction.

    A correction needs a reason and supersedes the latest published revision. Raises Conflict
    when the draft is already published, or when another publish of the year won the race.
    The delivery to the city platform is queued in the same transaction (see
    service.sharing.outbox).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(PUBLISH_LOCK)))
    current = published(conn, year=year, required=False)
    try:
        draft = latest_draft(conn, year=year) if revision is None else get(conn, year, revision)
    except NotFound:
        if revision is None and current is not None:  # published twice, or lost a race
            raise Conflict(
                f"{year} is already published (revision {current.revision}) and has no newer "
                "draft; compute one to correct it"
            ) from None
        raise
    if draft.status == "published":
        raise Conflict(f"revision {draft.revision} of {year} is already published")
    if current is not None:
        if draft.revision < current.revision:
            raise Conflict(
                f"revision {draft.revision} is older than the published revision "
                f"{current.revision}; compute a new draft to correct {year}"
            )
        if not reason:
            raise Conflict(
                f"{year} is already published (revision {current.revision}); "
                "publishing again is a correction and needs a reason"
            )
    last = conn.execute(
        select(snapshots.c.chain_seq, snapshots.c.chain_hash)
        .where(snapshots.c.chain_seq.is_not(None))
        .order_by(snapshots.c.chain_seq.desc())
        .limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    values: dict[str, Any] = {
        "status": "published",
        "supersedes": current.revision if current else None,
        "reason": reason,
        "published_at": now(),
        "published_by": by,
        "chain_seq": seq,
        "prev_hash": prev,
    }
    values["chain_hash"] = chain_hash({**_as_dict(draft), **values}, prev)
    try:
        updated = conn.execute(
            snapshots.update()
            .where(snapshots.c.id == draft.id, snapshots.c.status == "draft")
            .values(**values)
        ).rowcount
    except IntegrityError as exc:
        raise Conflict(f"{year} was published by a concurrent request") from exc
    if updated != 1:
        raise Conflict(f"revision {draft.revision} of {year} was published concurrently")
    done = get(conn, year=year, revision=draft.revision)
    outbox.enqueue(
        conn,
        snapshot=done,
        rows=rows_of(conn, done),
        config=sharing or SharingConfig(),
        now=values["published_at"],
    )
    return done


def _as_dict(s: Snapshot) -> dict[str, Any]:
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


def row_of(conn: Connection, snapshot: Snapshot, uscc: str) -> dict[str, Any]:
    row = conn.execute(
        select(snapshot_rows).where(
            snapshot_rows.c.snapshot_id == snapshot.id, snapshot_rows.c.uscc == uscc
        )
    ).first()
    if row is None:
        raise NotFound(f"{uscc} is not in revision {snapshot.revision} of {snapshot.year}")
    return dict(row._mapping)


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


def verify(conn: Connection) -> list[str]:
    """Recompute every hash from the stored rows; one message per snapshot that fails."""
    problems = []
    stored = every(conn)
    for s in stored:
        header = _as_dict(s)
        recomputed = content_hash(header, rows_of(conn, s))
        if recomputed != s.content_hash:
            problems.append(
                f"snapshot {s.year} revision {s.revision} (id {s.id}): rows do not match "
                "its content hash"
            )
    prev = GENESIS
    chained = sorted((s for s in stored if s.chain_seq is not None), key=lambda s: s.chain_seq or 0)
    for expected_seq, s in enumerate(chained, start=1):
        header = _as_dict(s)
        if s.status != "published" or s.chain_seq != expected_seq or s.prev_hash != prev:
            problems.append(f"snapshot {s.year} revision {s.revision}: hash chain is broken")
        elif chain_hash(header, prev) != s.chain_hash:
            problems.append(f"snapshot {s.year} revision {s.revision}: chain hash does not match")
        prev = s.chain_hash or ""
    unchained = [s for s in stored if s.status == "published" and s.chain_seq is None]
    problems += [
        f"snapshot {s.year} revision {s.revision}: published but not chained" for s in unchained
    ]
    return problems
