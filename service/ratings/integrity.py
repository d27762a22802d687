"""Proof that no snapshot was altered: content hashes, the hash chain, and `verify`.

A snapshot's `content_hash` covers exactly what was rated and the result, so computing the
same year again from the same inputs and rules gives the same hash. Published snapshots are
chained: each one's `chain_hash` covers the previous one's, so editing, deleting or reordering
any published snapshot breaks every hash after it, and `verify` names the first snapshot that
no longer matches. The JSON forms are pinned (`scoring.hashing`): snapshots stored by earlier
versions still verify.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from scoring.hashing import json_sha256
from service.ratings.snapshots import as_dict, every, rows_of

ROW_FIELDS = ("uscc", "name", "licence_no", "score", "grade", "vetoed", "vetoes", "points")


def content_hash(header: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Hash of what was rated and the result: header fields plus every row, in uscc order."""
    ordered = sorted(rows, key=lambda r: r["uscc"])
    return json_sha256(
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
    return json_sha256(
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


def verify(conn: Connection) -> list[str]:
    """Recompute every hash from the stored rows; one message per snapshot that fails."""
    problems = []
    stored = every(conn)
    for s in stored:
        header = as_dict(s)
        recomputed = content_hash(header, rows_of(conn, s))
        if recomputed != s.content_hash:
            problems.append(
                f"snapshot {s.year} revision {s.revision} (id {s.id}): rows do not match "
                "its content hash"
            )
    prev = GENESIS
    chained = sorted((s for s in stored if s.chain_seq is not None), key=lambda s: s.chain_seq or 0)
    for expected_seq, s in enumerate(chained, start=1):
        header = as_dict(s)
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
