"""The inspection register and a year's coverage, for supervisors and analysts.

The register is imported with the other files (`POST /v1/imports`, all or nothing); here it is
listed a page at a time, and the year's coverage (`scoring.coverage`: tasks, institutions
covered, with findings, ordered to rectify, penalties, and who was not inspected) computed
from the records on file, as `credit-rating coverage --stored` computes it.
"""

from __future__ import annotations

from fastapi import APIRouter

from scoring.coverage import Coverage, coverage
from service.api.deps import EngineDep, Limit, Offset, OptionalYear, Reader, YearPath
from service.api.problems import responses
from service.api.schemas import InspectionPublic
from service.core.database import reading
from service.records import inspections as register
from service.records import storage

router = APIRouter(prefix="/v1", tags=["inspections"])


@router.get(
    "/inspections",
    response_model=list[InspectionPublic],
    responses=responses(401, 403, 422),
    summary="List the inspection register, optionally of one year",
)
def list_inspections(
    who: Reader,
    engine: EngineDep,
    year: OptionalYear = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[InspectionPublic]:
    with reading(engine) as conn:
        rows = register.list_register(conn, year=year, limit=limit, offset=offset)
    return [InspectionPublic(**r) for r in rows]


@router.get(
    "/coverage/{year}",
    response_model=Coverage,
    responses=responses(401, 403, 422),
    summary="A year's inspection coverage: tasks, institutions covered and not covered",
)
def read_coverage(year: YearPath, who: Reader, engine: EngineDep) -> Coverage:
    with reading(engine) as conn:
        institutions, findings = storage.frames(conn, year=year)
        inspections = register.register_frame(conn, year=year)
    return coverage(institutions, inspections, findings, year)
