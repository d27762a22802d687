"""Dry runs: what the grades of a year would be under other findings or a candidate rule set.

Nothing is stored. Each institution's grade is set beside its published one, so a bureau can
see what a proposed amendment, or an objection upheld, would change before adopting it. The
same function serves `POST /v1/evaluate` and `credit-rating evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection

from scoring.engine import rate
from scoring.rules import RulesInForce
from scoring.standing import standing
from service.core.errors import NotFound
from service.ratings.snapshots import published, rows_of
from service.records import storage

SUPPLIED_FIELDS = ("uscc", "indicator", "occurred_on", "count", "status")
"""What a supplied finding gives: enough to rate it, nothing to store."""


@dataclass(frozen=True)
class GradeChange:
    """One institution's trial grade beside its published one (the API's schema too)."""

    uscc: str
    name: str
    published_score: int | None
    published_grade: str | None
    score: int
    grade: str
    changed: bool


@dataclass(frozen=True)
class DryRun:
    force: RulesInForce
    published_revision: int | None
    institutions: list[GradeChange]

    @property
    def changes(self) -> int:
        return sum(c.changed for c in self.institutions)


def dry_run(
    conn: Connection, *, force: RulesInForce, findings: Sequence[dict[str, Any]] | None = None
) -> DryRun:
    """Rate `force.year` from the stored institutions, with the stored findings of the year or
    `findings` instead (all of them), and compare each grade to the published one."""
    institutions, stored = storage.frames(conn, year=force.year)
    current = published(conn, year=force.year, required=False)
    before = {r["uscc"]: r for r in rows_of(conn, current)} if current else {}
    supplied = stored if findings is None else _supplied(findings, set(institutions["uscc"]))
    split = standing(institutions, supplied)  # closed institutions are never graded
    rating = rate(split.rated, split.findings, force)
    changes = []
    for row in rating.to_dict("records"):
        old = before.get(row["uscc"])
        changes.append(
            GradeChange(
                uscc=row["uscc"],
                name=row["name"],
                published_score=old["score"] if old else None,
                published_grade=old["grade"] if old else None,
                score=int(row["score"]),
                grade=str(row["grade"]),
                changed=old is None or old["grade"] != row["grade"],
            )
        )
    return DryRun(force, current.revision if current else None, changes)


def _supplied(findings: Sequence[dict[str, Any]], known: set[str]) -> pd.DataFrame:
    """Supplied findings as an engine frame; an institution not on record is NotFound."""
    for f in findings:
        if f["uscc"] not in known:
            raise NotFound(f"no institution {f['uscc']}")
    frame = pd.DataFrame(
        [{k: f[k] for k in SUPPLIED_FIELDS} for f in findings], columns=list(SUPPLIED_FIELDS)
    )
    frame["occurred_on"] = pd.to_datetime(frame["occurred_on"]).astype("datetime64[ns]")
    frame["count"] = frame["count"].astype("int64")
    return frame
