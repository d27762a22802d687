"""Every error as an RFC 9457 problem (application/problem+json), mapped in this one place.

Domain code raises the errors of its two trees (`scoring.errors`, `service.core.errors`); only
here do they become HTTP statuses, so the scorer and the storage never know about HTTP:

    ServiceError   NotFound 404 · Conflict 409 · InvalidInput 422 (TooLarge 413) ·
                   NotConfigured 409
    ScoringError   InputError 422 (every problem listed) · RulesError 422 ·
                   UnknownInstitution 404 · any other 422
    anything else  500, a problem document naming the exception's class, never a traceback
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.types import Scope

from scoring.errors import InputError, RulesError, ScoringError, UnknownInstitution
from service.core.errors import (
    Conflict,
    InvalidInput,
    NotConfigured,
    NotFound,
    ServiceError,
    TooLarge,
)

MEDIA_TYPE = "application/problem+json"

STATUS: dict[type[Exception], tuple[int, str]] = {
    NotFound: (404, "Not found"),
    Conflict: (409, "Conflict"),
    InvalidInput: (422, "Invalid input"),
    TooLarge: (413, "Too large"),
    NotConfigured: (409, "Not configured"),
    UnknownInstitution: (404, "Not found"),
    RulesError: (422, "Invalid rules"),
    ScoringError: (422, "Cannot rate"),
}
"""Status and title of each domain error, by its nearest class here (InputError, whose every
problem is listed, has a handler of its own)."""


TITLES = {408: "Request timeout", 413: "Too large", 429: "Too many requests"}
"""Titles of the statuses whose HTTPException detail says which limit (the problem's detail)."""


class Problem(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, **extra)
    sent = dict(headers or {})
    if status == 401:
        sent["WWW-Authenticate"] = "ApiKey"
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=sent or None,
    )


def allowed_methods(app: Any, scope: Scope) -> str:
    """The methods of every route whose path matches the request's (for a 405's `Allow`):
    Starlette names only the first route it matched, and paths here have a GET and a POST."""
    path = scope["path"]
    flatten = getattr(routing, "iter_route_contexts", None)  # FastAPI >= 0.16x nests routers
    routes = flatten(app.router.routes) if flatten else app.router.routes
    methods = {
        method
        for route in routes
        if route.path_regex.match(path)
        for method in (getattr(route, "methods", None) or ())
    }
    return ", ".join(sorted(methods))


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route may answer."""
    titles = {
        400: "Bad request",
        401: "Missing or invalid API key",
        403: "The key's role may not do this",
        404: "Not found",
        409: "Conflict with the stored state",
        408: "The request's body did not arrive in time",
        413: "Over a limit (the problem names it)",
        422: "Invalid request or input",
        429: "Too many requests (Retry-After says when to try again)",
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
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request.app, request.scope)
        title = TITLES.get(exc.status_code)
        if title is None:
            return problem_response(exc.status_code, str(exc.detail), None, headers=headers)
        return problem_response(exc.status_code, title, str(exc.detail), headers=headers)

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
        detail = f"{exc.total} problem(s) in the input; nothing was stored"
        return problem_response(422, "Invalid input", detail, errors=errors, total=exc.total)

    async def _domain(_: Request, exc: Exception) -> JSONResponse:
        status, title = next(STATUS[k] for k in type(exc).__mro__ if k in STATUS)
        return problem_response(status, title, str(exc))

    app.add_exception_handler(ServiceError, _domain)
    app.add_exception_handler(ScoringError, _domain)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected(exc)


def unexpected(exc: BaseException) -> JSONResponse:
    """A bug, not a client error: still a problem document, never a stack trace."""
    return problem_response(500, "Internal error", type(exc).__name__)
