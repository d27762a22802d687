"""Import institution and finding files (CSV, JSON, XLSX, Parquet) over HTTP, all or nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from service.api.deps import EngineDep, RulesDep, SettingsDep, Supervisor
from service.api.problems import responses
from service.api.schemas import ImportReport
from service.records.importing import import_uploads

router = APIRouter(prefix="/v1", tags=["institutions", "findings"])


@router.post(
    "/imports",
    response_model=ImportReport,
    responses=responses(401, 403, 409, 413, 422),
    summary="Import files of institutions and/or findings; any problem stores nothing",
)
def import_upload(
    files: Annotated[list[UploadFile], File(description="CSV, JSON, XLSX or Parquet files")],
    who: Supervisor,
    engine: EngineDep,
    rules: RulesDep,
    settings: SettingsDep,
) -> ImportReport:
    uploads = [(upload.filename or "", upload.file) for upload in files]
    summary = import_uploads(engine, uploads, rules=rules, by=who.name, settings=settings)
    return ImportReport.model_validate(summary, from_attributes=True)
