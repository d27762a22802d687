"""Dry runs: what grades would be under other findings or a candidate rule set. Nothing stored."""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from scoring.engine import rate
from scoring.rules import parse_rules
from service.api.deps import EngineDep, Reader, RulesDep, SettingsDep
from service.api.problems import responses
from service.api.schemas import EvaluateRequest, EvaluateResponse, GradeChange
from service.core.database import reading
from service.ratings import snapshots
from service.records import storage

router = APIRouter(prefix="/v1", tags=["ratings"])


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    responses=responses(401, 403, 404, 422),
    summary="Rate a year with supplied findings or a candidate rule set; compare to published",
)
def evaluate(
    body: EvaluateRequest, who: Reader, engine: EngineDep, rules: RulesDep, settings: SettingsDep
) -> EvaluateResponse:
    candidate = parse_rules(body.rules) if body.rules is not None else rules
    force = candidate.in_force(body.year, body.scale or settings.scale)
    with reading(engine) as conn:
        institutions, findings = storage.frames(conn, year=body.year)
        current = snapshots.published(conn, year=body.year, required=False)
        before = {r["uscc"]: r for r in snapshots.rows_of(conn, current)} if current else {}
    if body.findings is not None:
        findings = _supplied(body, institutions)
    rating = rate(institutions, findings, force)
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
    return EvaluateResponse(
        year=body.year,
        scale=force.scale.code,
        ruleset_version=force.version,
        rules_hash=force.content_hash,
        published_revision=current.revision if current else None,
        changes=sum(c.changed for c in changes),
        institutions=changes,
    )


def _supplied(body: EvaluateRequest, institutions: pd.DataFrame) -> pd.DataFrame:
    """The request's findings as an engine frame; unknown institutions are a 404."""
    assert body.findings is not None
    known = set(institutions["uscc"])
    for f in body.findings:
        if f.uscc not in known:
            raise storage.NotFound(f"no institution {f.uscc}")
    frame = pd.DataFrame(
        [f.model_dump() for f in body.findings],
        columns=["uscc", "indicator", "occurred_on", "count", "status"],
    )
    frame["occurred_on"] = pd.to_datetime(frame["occurred_on"]).astype("datetime64[ns]")
    frame["count"] = frame["count"].astype("int64")
    return frame
