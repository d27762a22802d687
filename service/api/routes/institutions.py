"""Institutions: create, list, read (the system of record for who is rated)."""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from service.api.deps import EngineDep, Limit, Offset, Reader, Supervisor
from service.api.problems import responses
from service.api.schemas import USCC, InstitutionCreate, InstitutionPublic
from service.core.clock import now
from service.core.database import reading, writing
from service.records import storage

router = APIRouter(prefix="/v1/institutions", tags=["institutions"])


@router.post(
    "",
    status_code=201,
    response_model=InstitutionPublic,
    responses=responses(401, 403, 409, 422),
    summary="Record an institution (an existing one is updated)",
)
def create_institution(
    body: InstitutionCreate, who: Supervisor, engine: EngineDep
) -> InstitutionPublic:
    frame = pd.DataFrame([body.model_dump(mode="json")])
    with writing(engine) as conn:
        storage.import_frames(
            conn, institution_frame=frame, finding_frame=None, by=who.name, at=now()
        )
        return InstitutionPublic(**storage.get_institution(conn, body.uscc))


@router.get(
    "",
    response_model=list[InstitutionPublic],
    responses=responses(401, 403, 422),
    summary="List institutions by credit code",
)
def list_institutions(
    who: Reader, engine: EngineDep, limit: Limit = 100, offset: Offset = 0
) -> list[InstitutionPublic]:
    with reading(engine) as conn:
        rows = storage.list_institutions(conn, limit=limit, offset=offset)
    return [InstitutionPublic(**r) for r in rows]


@router.get(
    "/{uscc}",
    response_model=InstitutionPublic,
    responses=responses(401, 403, 404, 422),
    summary="Read one institution",
)
def read_institution(uscc: USCC, who: Reader, engine: EngineDep) -> InstitutionPublic:
    with reading(engine) as conn:
        return InstitutionPublic(**storage.get_institution(conn, uscc))
