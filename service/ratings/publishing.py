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

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from scoring.engine import rate
from scoring.explain import explain_all, input_digest
from scoring.inputs import InstitutionStatus
from scoring.rules import RuleSet
from scoring.standing import standing
from service.core.clock import now
from service.core.errors import Conflict, NotConfigured, NotFound
from service.core.settings import SharingConfig
from service.core.tables import snapshot_rows, snapshots
from service.ratings.integrity import (
    GENESIS,
    append_anchor,
    chain_hash,
    content_hash,
    fingerprint,
    load_signing_key,
    sign,
)
from service.ratings.snapshots import Snapshot, as_dict, get, latest_draft, published, rows_of
from service.records import storage
from service.sharing import outbox

PUBLISH_LOCK = 19_800_000  # PostgreSQL advisory lock key for publishing


def rate_rows(
    institutions: Any, findings: Any, rules: RuleSet, year: int, scale: str | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Rate a year and shape it as a snapshot header and rows (nothing stored)."""
    force = rules.in_force(year, scale)
    split = standing(institutions, findings)
    rating = rate(split.rated, split.findings, force)
    explanations = explain_all(split.rated, split.findings, force, year)
    codes = [i.code for i in force.indicators]
    suspended = split.suspended
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
            "status": InstitutionStatus.suspended.value if r["uscc"] in suspended else None,
        }
        for r, licence, e in zip(
            rating.to_dict("records"), split.rated["licence_no"], explanations, strict=True
        )
    ]
    not_rated = split.not_rated()
    header = {
        "year": year,
        "scale": force.scale.code,
        "ruleset_version": force.version,
        "rules_hash": force.content_hash,
        "input_digest": input_digest(institutions, findings, year),
        "not_rated": json.dumps(not_rated, ensure_ascii=False) if not_rated else None,
    }
    return header, rows


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
    """
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
            reason=reason,
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
        rows=rows_of(conn, done),
        config=sharing or SharingConfig(),
        now=values["published_at"],
    )
    if anchor_file is not None:  # last: an error above leaves no line for a rolled-back publish
        append_anchor(anchor_file, done)
    return done
