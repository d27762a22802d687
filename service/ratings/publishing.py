"""Computing a year's draft and publishing it; a second publication is a correction.

Publishing, and numbering a new draft, are serialised (BEGIN IMMEDIATE on SQLite, an advisory
lock on PostgreSQL), and a unique index allows one first publication per year and one
correction per revision, so concurrent publishes of a year give exactly one result and a
Conflict for the others. The delivery to the city platform is queued in the publishing
transaction (`service.sharing.outbox`), so a published year always has its delivery queued.
With a signing key, the publication is signed; with an anchor file, its chain head is appended
there as the transaction's last step (`service.ratings.integrity`).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from scoring.engine import rate
from scoring.explain import records
from scoring.explain_parts import YearInputs, shared_parts
from scoring.inputs import InstitutionStatus
from scoring.rules import RuleSet
from scoring.standing import standing
from service.core.clock import now
from service.core.errors import Conflict, NotConfigured, NotFound
from service.core.settings import SharingConfig
from service.core.tables import snapshot_rows, snapshots
from service.ratings.integrity import (
    GENESIS,
    ContentHasher,
    append_anchor,
    chain_hash,
    fingerprint,
    load_signing_key,
    sign,
)
from service.ratings.snapshots import (
    Snapshot,
    as_dict,
    get,
    grades_of,
    latest_draft,
    published,
)
from service.records import storage
from service.sharing import outbox

PUBLISH_LOCK = 19_800_000  # PostgreSQL advisory lock key for publishing


ROW_CHUNK = 5_000
"""Rows made, hashed and stored at a time when computing a draft: a national year's rows (their
explanations are several kilobytes each) are never all held at once."""

ROW_COLUMNS = (
    "uscc",
    "name",
    "licence_no",
    "score",
    "grade",
    "vetoed",
    "vetoes",
    "points",
    "explanation",
    "status",
)

_stored = itemgetter(*ROW_COLUMNS)
"""A row's values in the order of `ROW_COLUMNS`."""


def rated_rows(
    institutions: Any, findings: Any, rules: RuleSet, year: int, scale: str | None
) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """Rate a year: the snapshot header, and its rows made lazily in uscc order (nothing stored).

    The engine rates the whole district at once; the rows (each with its explanation's own
    parts, `scoring.explain_parts`, the parts every explanation shares being in the header)
    are then made as they are taken, so the caller can hash and store them a chunk at a time."""
    force = rules.in_force(year, scale)
    split = standing(institutions, findings)
    graded = split.rated
    if not graded["uscc"].is_monotonic_increasing:  # the content hash takes rows in uscc order
        graded = graded.sort_values("uscc", ignore_index=True)
    graded = graded.reset_index(drop=True)
    rating = rate(graded, split.findings, force)
    not_rated = split.not_rated()
    inputs = YearInputs.of(institutions, findings, year)
    header = {
        "year": year,
        "scale": force.scale.code,
        "ruleset_version": force.version,
        "rules_hash": force.content_hash,
        "input_digest": inputs.digest(),
        "not_rated": json.dumps(not_rated, ensure_ascii=False) if not_rated else None,
        "explanation_parts": shared_parts(force),
    }
    return header, _rows(graded, inputs, rating, force, split.suspended)


def _rows(
    graded: Any, inputs: YearInputs, rating: Any, force: Any, suspended: set[str]
) -> Iterator[dict[str, Any]]:
    codes = [i.code for i in force.indicators]
    columns = ["uscc", "name", "score", "grade", "vetoed", "vetoes"]
    licences = graded["licence_no"]
    mark = InstitutionStatus.suspended.value
    # Most institutions keep the same points, and have no veto: each text written once.
    points: dict[tuple[int, ...], str] = {}
    vetoes: dict[tuple[str, ...], str] = {}
    for start in range(0, len(graded), ROW_CHUNK):
        chunk = rating.iloc[start : start + ROW_CHUNK]
        part = records(chunk, columns)
        kept_rows = chunk[codes].to_numpy(dtype="int64").tolist()
        licence = licences.iloc[start : start + ROW_CHUNK].tolist()
        for r, kept_row, licence_no in zip(part, kept_rows, licence, strict=True):
            kept = tuple(kept_row)
            if kept not in points:
                points[kept] = json.dumps(dict(zip(codes, kept, strict=True)))
            vetoed = tuple(r["vetoes"])
            if vetoed not in vetoes:
                vetoes[vetoed] = json.dumps(list(vetoed))
            yield {
                "uscc": r["uscc"],
                "name": r["name"],
                "licence_no": licence_no,
                "score": int(r["score"]),
                "grade": str(r["grade"]),
                "vetoed": bool(r["vetoed"]),
                "vetoes": vetoes[vetoed],
                "points": points[kept],
                "explanation": inputs.own_parts(r["uscc"], force),
                "status": mark if r["uscc"] in suspended else None,
            }


def rate_rows(
    institutions: Any, findings: Any, rules: RuleSet, year: int, scale: str | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Rate a year and shape it as a snapshot header and rows (nothing stored)."""
    header, rows = rated_rows(institutions, findings, rules, year, scale)
    return header, list(rows)


def _statuses_as_published(
    conn: Connection, snapshot: Snapshot, institutions: pd.DataFrame
) -> pd.DataFrame:
    """`institutions` with the statuses `snapshot` rated them with: a correction corrects
    findings, not who was in the year's result, so an institution closed since the year was
    published stays rated in it (and one closed then stays not rated). Institutions recorded
    since keep their own status."""
    closed = {entry["uscc"] for entry in json.loads(snapshot.not_rated or "[]")}
    marked = {
        uscc
        for (uscc,) in conn.execute(
            select(snapshot_rows.c.uscc).where(
                snapshot_rows.c.snapshot_id == snapshot.id,
                snapshot_rows.c.status == InstitutionStatus.suspended.value,
            )
        )
    }
    rated = set(
        conn.scalars(select(snapshot_rows.c.uscc).where(snapshot_rows.c.snapshot_id == snapshot.id))
    )
    status = [
        InstitutionStatus.closed.value
        if uscc in closed
        else InstitutionStatus.suspended.value
        if uscc in marked
        else InstitutionStatus.operating.value
        if uscc in rated
        else own
        for uscc, own in zip(institutions["uscc"], institutions["status"], strict=True)
    ]
    return institutions.assign(status=status)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector held off while a year is computed: its rows and records
    are hundreds of thousands of young objects, none in a cycle, and each full collection
    would walk every one of them (a sixth of a national year's time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_collector_paused()
def compute_draft(
    conn: Connection,
    *,
    rules: RuleSet,
    year: int,
    scale: str | None,
    by: str,
    reason: str | None = None,
) -> Snapshot:
    """Rate `year` from the stored institutions and findings and store it as a draft.

    `reason` is why the draft was computed (an upheld objection): publishing it as a
    correction records it in the correction's reason (see `publish`).

    The rows are made, hashed and stored `ROW_CHUNK` at a time (on PostgreSQL with COPY); the
    draft's header is stored first and given its content hash after its last row, all in the
    caller's one transaction.
    """
    institutions, findings = storage.frames(conn, year=year)
    current = published(conn, year=year, required=False)
    if current is not None:  # a correction: who is rated stays as published
        institutions = _statuses_as_published(conn, current, institutions)
    header, rows = rated_rows(institutions, findings, rules, year, scale)
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
            content_hash="",  # set below, once every row is hashed
            created_at=now(),
            created_by=by,
            reason=reason,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    hasher = ContentHasher(header)
    chunk: list[dict[str, Any]] = []
    for row in rows:
        hasher.add(row)
        chunk.append(row)
        if len(chunk) == ROW_CHUNK:
            _store_rows(conn, snapshot_id, chunk)
            chunk = []
    _store_rows(conn, snapshot_id, chunk)
    conn.execute(
        snapshots.update()
        .where(snapshots.c.id == snapshot_id)
        .values(content_hash=hasher.hexdigest())
    )
    return get(conn, year=year, revision=revision)


def _store_rows(conn: Connection, snapshot_id: int, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":  # COPY: many times faster than INSERTs
        driver = conn.connection.driver_connection
        assert driver is not None
        names = ", ".join(("snapshot_id", *ROW_COLUMNS))
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY snapshot_rows ({names}) FROM STDIN") as copy,
        ):
            for r in rows:
                copy.write_row((snapshot_id, *_stored(r)))
        return
    # Tuples straight to the driver's executemany: SQLAlchemy's per-row parameter handling
    # would cost more than SQLite's insert.
    conn.exec_driver_sql(
        f"INSERT INTO snapshot_rows ({', '.join(('snapshot_id', *ROW_COLUMNS))}) "
        f"VALUES ({', '.join('?' * (len(ROW_COLUMNS) + 1))})",
        [(snapshot_id, *_stored(r)) for r in rows],
    )


def publish(
    conn: Connection,
    *,
    year: int,
    revision: int | None,
    reason: str | None,
    by: str,
    sharing: SharingConfig | None = None,
    signing_key: Path | None = None,
    anchor_file: Path | None = None,
) -> Snapshot:
    """Make a draft the year's official result; a second publication is a correction.

    A correction needs a reason and supersedes the latest published revision. Raises Conflict
    when the draft is already published, or when another publish of the year won the race.
    The delivery to the city platform is queued in the same transaction (see
    service.sharing.outbox).

    `signing_key` (CREDIT_SIGNING_KEY) signs the publication; once one publication is signed,
    publishing without the key is refused (NotConfigured). `anchor_file` (CREDIT_ANCHOR_FILE)
    gets a line recording the new chain head; if it cannot be written, nothing is published.
    """
    key = load_signing_key(signing_key) if signing_key is not None else None
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
    if draft.reason:  # why the draft was computed (an upheld objection) stays on record
        reason = draft.reason if not reason else f"{reason}（{draft.reason}）"
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
        select(snapshots.c.chain_seq, snapshots.c.chain_hash, snapshots.c.signature)
        .where(snapshots.c.chain_seq.is_not(None))
        .order_by(snapshots.c.chain_seq.desc())
        .limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    if key is None and last is not None and last[2] is not None:
        raise NotConfigured(
            "publications are signed: set CREDIT_SIGNING_KEY to the signing key to publish"
        )
    values: dict[str, Any] = {
        "status": "published",
        "supersedes": current.revision if current else None,
        "reason": reason,
        "published_at": now(),
        "published_by": by,
        "chain_seq": seq,
        "prev_hash": prev,
    }
    values["chain_hash"] = chain_hash({**as_dict(draft), **values}, prev)
    if key is not None:
        values["signature"] = sign(key, values["chain_hash"])
        values["key_fingerprint"] = fingerprint(key.public_key())
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
        rows=grades_of(conn, done),  # what a batch carries: no explanation is read
        config=sharing or SharingConfig(),
        now=values["published_at"],
    )
    if anchor_file is not None:  # last: an error above leaves no line for a rolled-back publish
        append_anchor(anchor_file, done)
    return done
