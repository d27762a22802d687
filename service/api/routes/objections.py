"""Objections (异议) in a publicity period: a supervisor records them and resolves them;
supervisors and analysts list them. Nothing is ever deleted (docs/objections.md)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import Field

from service.api.caches.responses import cached
from service.api.deps import (
    Anyone,
    EngineDep,
    OptionalYear,
    Reader,
    RulesDep,
    SettingsDep,
    Supervisor,
    YearQuery,
)
from service.api.problems import responses
from service.api.published import EXPLAINERS
from service.api.schemas import NO_NUL, USCC, Reason, SnapshotPublic, Strict, Year
from service.core import clock
from service.core.database import reading, writing
from service.ratings import objections
from service.ratings.objections import ObjectionStatus

ObjectionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class ObjectionCreate(Strict):
    year: Year
    uscc: USCC
    finding_id: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)] | None = None
    filed_by: Annotated[
        str, Field(min_length=1, max_length=200, pattern=NO_NUL, examples=["机构法定代表人 张某"])
    ]
    text: Reason


class ObjectionPublic(Strict):
    id: int
    year: int
    revision: int
    uscc: str
    finding_id: str | None
    filed_by: str
    filed_at: datetime
    recorded_by: str
    text: str
    status: ObjectionStatus
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None
    correction_revision: int | None


class ResolveRequest(Strict):
    decision: Literal["upheld", "rejected"]
    reason: Reason


class ResolutionPublic(Strict):
    objection: ObjectionPublic
    correction: SnapshotPublic | None = Field(
        description="Upheld against a finding: the correction draft computed, ready to publish"
    )


class CorrectionPublic(Strict):
    """An upheld objection and the grade it corrected (no text: that stays with supervisors)."""

    objection_id: int
    year: int
    uscc: str
    finding_id: str | None
    draft_revision: int | None
    before_revision: int
    before_grade: str | None = Field(description="None: not rated in that revision (closed)")
    published_revision: int | None = Field(description="None: the correction is not published")
    after_grade: str | None


router = APIRouter(prefix="/v1/objections", tags=["objections"])


@router.post(
    "",
    status_code=201,
    response_model=ObjectionPublic,
    responses=responses(401, 403, 404, 409, 422),
    summary="Record an objection to a year's published rating, within its publicity period",
)
def file_objection(
    body: ObjectionCreate, who: Supervisor, engine: EngineDep, settings: SettingsDep
) -> ObjectionPublic:
    """409 once the publicity period of the year's latest published revision is over (the
    problem gives the deadline)."""
    with writing(engine) as conn:
        row = objections.file(
            conn,
            settings=settings,
            year=body.year,
            uscc=body.uscc,
            finding_id=body.finding_id,
            filed_by=body.filed_by,
            text=body.text,
            by=who.name,
            at=clock.now(),
        )
    return ObjectionPublic(**row)


@router.get(
    "",
    response_model=list[ObjectionPublic],
    responses=responses(401, 403, 422),
    summary="Objections in the order filed (of one year, one status)",
)
def list_objections(
    who: Reader,
    engine: EngineDep,
    year: OptionalYear = None,
    status: ObjectionStatus | None = None,
) -> list[ObjectionPublic]:
    with reading(engine) as conn:
        return [ObjectionPublic(**r) for r in objections.listing(conn, year=year, status=status)]


@router.get(
    "/corrections",
    response_model=list[CorrectionPublic],
    responses=responses(401, 422),
    summary="Which grades of a year were corrected after an upheld objection",
)
@cached(query=["year"])
def list_corrections(year: YearQuery, who: Anyone, engine: EngineDep) -> list[CorrectionPublic]:
    """Each upheld objection of the year, the grade in the revision before and in the
    published correction that includes it. Supervisors and analysts see every one, with the
    finding and the draft; anyone else only the published corrections, as the public sees
    no draft and no finding."""
    with reading(engine) as conn:
        found = objections.corrections(conn, year=year)
    if who is None or who.role not in EXPLAINERS:
        found = [
            replace(c, finding_id=None, draft_revision=None)
            for c in found
            if c.published_revision is not None
        ]
    return [CorrectionPublic.model_validate(c, from_attributes=True) for c in found]


@router.post(
    "/{objection_id}/resolve",
    response_model=ResolutionPublic,
    responses=responses(401, 403, 404, 409, 422),
    summary="Uphold (revoke the finding, compute a correction draft) or reject an objection",
)
def resolve_objection(
    objection_id: ObjectionId,
    body: ResolveRequest,
    who: Supervisor,
    engine: EngineDep,
    rules: RulesDep,
) -> ResolutionPublic:
    with writing(engine) as conn:
        done = objections.resolve(
            conn,
            objection_id=objection_id,
            upheld=body.decision == "upheld",
            reason=body.reason,
            rules=rules,
            by=who.name,
            at=clock.now(),
        )
    return ResolutionPublic(
        objection=ObjectionPublic(**done.objection),
        correction=SnapshotPublic.of(done.correction) if done.correction else None,
    )
