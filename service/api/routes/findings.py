"""Findings: record, list, read, and revoke with a reason (never delete)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from scoring.inputs import FindingStatus
from service.api.deps import (
    EngineDep,
    FindingId,
    Limit,
    Offset,
    OptionalYear,
    Reader,
    RulesDep,
    Supervisor,
)
from service.api.problems import responses
from service.api.schemas import NO_NUL, FindingCreate, FindingPublic, Revocation
from service.core.clock import now
from service.core.database import reading, writing
from service.records import storage
from service.records.importing import record_finding

router = APIRouter(prefix="/v1/findings", tags=["findings"])


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
    with writing(engine) as conn:
        row = record_finding(conn, body.model_dump(), rules=rules, by=who.name)
    return FindingPublic(**row)


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
    year: OptionalYear = None,
    status: FindingStatus | None = None,
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
