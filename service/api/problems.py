"""Every error as an RFC 9457 problem (application/problem+json), mapped in this one place.

Domain code raises its own errors (scoring.errors, store and snapshot errors); only here do
they become HTTP statuses, so the scorer and the storage never know about HTTP.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from scoring.errors import InputError, RulesError, ScoringError, UnknownInstitution
from service.ratings import snapshots
from service.records import storage
from service.sharing import outbox

MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_response(
    status: int, title: str, detail: str | None = None, **extra: Any
) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, **extra)
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers={"WWW-Authenticate": "ApiKey"} if status == 401 else None,
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route may answer."""
    titles = {
        400: "Bad request",
        401: "Missing or invalid API key",
        403: "The key's role may not do this",
        404: "Not found",
        409: "Conflict with the stored state",
        422: "Invalid request or input",
    }
    return {
        s: {"model": Problem, "description": titles[s], "content": {MEDIA_TYPE: {}}}
        for s in statuses
    }


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        return problem_response(422, "Invalid request", "see errors", errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), None)

    @app.exception_handler(InputError)
    async def _input(_: Request, exc: InputError) -> JSONResponse:
        errors = [
            {
                "file": p.file,
                "row": p.row,
                "column": p.column,
                "value": p.value,
                "expected": p.expected,
            }
            for p in exc.problems
        ]
        detail = f"{len(exc.problems)} problem(s) in the input; nothing was stored"
        return problem_response(422, "Invalid input", detail, errors=errors)

    @app.exception_handler(RulesError)
    async def _rules(_: Request, exc: RulesError) -> JSONResponse:
        return problem_response(422, "Invalid rules", str(exc))

    @app.exception_handler(storage.UnknownCode)
    async def _unknown_code(_: Request, exc: storage.UnknownCode) -> JSONResponse:
        return problem_response(422, "Invalid input", str(exc))

    @app.exception_handler(UnknownInstitution)
    async def _unknown(_: Request, exc: UnknownInstitution) -> JSONResponse:
        return problem_response(404, "Not found", str(exc))

    @app.exception_handler(ScoringError)
    async def _scoring(_: Request, exc: ScoringError) -> JSONResponse:
        return problem_response(422, "Cannot rate", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug, not a client error: still a problem document, never a stack trace.
        return problem_response(500, "Internal error", type(exc).__name__)

    for not_found in (storage.NotFound, snapshots.NotFound):
        app.add_exception_handler(not_found, _not_found)
    for conflict in (storage.Conflict, snapshots.Conflict, outbox.OutboxError):
        app.add_exception_handler(conflict, _conflict)


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return problem_response(404, "Not found", str(exc))


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return problem_response(409, "Conflict", str(exc))
