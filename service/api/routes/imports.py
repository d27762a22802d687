"""Import institution and finding files (CSV, JSON, XLSX) over HTTP, all or nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile

from service.api.deps import EngineDep, RulesDep, Supervisor
from service.api.problems import responses
from service.api.schemas import ImportReport
from service.records.importing import import_files

router = APIRouter(prefix="/v1", tags=["institutions", "findings"])

MAX_FILES = 20


@router.post(
    "/imports",
    response_model=ImportReport,
    responses=responses(401, 403, 409, 422),
    summary="Import files of institutions and/or findings; any problem stores nothing",
)
def import_upload(
    files: Annotated[list[UploadFile], File(description="CSV, JSON or XLSX files")],
    who: Supervisor,
    engine: EngineDep,
    rules: RulesDep,
) -> ImportReport:
    if len(files) > MAX_FILES:
        raise HTTPException(422, f"At most {MAX_FILES} files per import")
    with tempfile.TemporaryDirectory() as folder:
        paths, names = [], []
        for n, upload in enumerate(files):
            name = Path(upload.filename or f"upload-{n}").name
            path = Path(folder) / f"{n}-{name}"
            path.write_bytes(upload.file.read())
            paths.append(path)
            names.append(name)
        summary = import_files(engine, paths, rules=rules, by=who.name, names=names)
    return ImportReport(**summary.__dict__)
