"""Findings: record, list, read, and revoke with a reason (never delete)."""

from __future__ import annotations

from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Path, Query

from service.api.deps import EngineDep, Reader, RulesDep, Supervisor
from service.api.problems import responses
from service.api.routes.institutions import Limit, Offset
from service.api.schemas import NO_NUL, FindingCreate, FindingPublic, Revocation
from service.core.database import reading, writing
from service.ratings.snapshots import now
from service.records import storage

router = APIRouter(prefix="/v1/findings", tags=["findings"])

FindingId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)]


@router.post(
    "",
    status_code=201,
    response_model=FindingPublic,
    responses=responses(401, 403, 404, 409, 422),
    summary="Record a finding against an indicator (or a veto item)",
)
def create_finding(
    body: FindingCreate, who: Supervisor, engine: EngineDep, rules: RulesDep
) -> FindingPublic:
    codes = {i.code for i in rules.indicators} | {v.code for v in rules.vetoes}
    if body.indicator not in codes:
        raise storage.UnknownCode(f"unknown indicator code {body.indicator!r}")
    record = {**body.model_dump(), "status": "active"}
    record["finding_id"] = body.finding_id or storage.finding_id_for(record)
    record["occurred_on"] = pd.Timestamp(body.occurred_on)
    with writing(engine) as conn:
        storage.get_institution(conn, body.uscc)  # 404 for an institution not on record
        storage.import_frames(
            conn,
            institution_frame=None,
            finding_frame=pd.DataFrame([record]),
            by=who.name,
            at=now(),
        )
        return FindingPublic(**storage.get_finding(conn, record["finding_id"]))


@router.get(
    "",
    response_model=list[FindingPublic],
    responses=responses(401, 403, 422),
    summary="List findings, optionally of one institution, year or status",
)
def list_findings(
    who: Reader,
    engine: EngineDep,
    uscc: Annotated[str | None, Query(max_length=18, pattern=NO_NUL)] = None,
    year: Annotated[int | None, Query(ge=2022, le=2100)] = None,
    status: Literal["active", "revoked"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[FindingPublic]:
    with reading(engine) as conn:
        rows = storage.list_findings(
            conn, uscc=uscc, year=year, status=status, limit=limit, offset=offset
        )
    return [FindingPublic(**r) for r in rows]


@router.get(
    "/{finding_id}",
    response_model=FindingPublic,
    responses=responses(401, 403, 404, 422),
    summary="Read one finding",
)
def read_finding(finding_id: FindingId, who: Reader, engine: EngineDep) -> FindingPublic:
    with reading(engine) as conn:
        return FindingPublic(**storage.get_finding(conn, finding_id))


@router.post(
    "/{finding_id}/revoke",
    response_model=FindingPublic,
    responses=responses(401, 403, 404, 409, 422),
    summary="Revoke a finding (objection upheld, review): kept on record, no longer counted",
)
def revoke_finding(
    finding_id: FindingId, body: Revocation, who: Supervisor, engine: EngineDep
) -> FindingPublic:
    with writing(engine) as conn:
        row = storage.revoke(conn, finding_id=finding_id, by=who.name, reason=body.reason, at=now())
    return FindingPublic(**row)
