"""Liveness, readiness and Prometheus metrics, for whoever runs the service."""

from __future__ import annotations

import os

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from service.api.deps import Anyone, EngineDep, SettingsDep
from service.api.problems import problem_response
from service.core.errors import NotConfigured
from service.core.migrate import is_current, missing_guards
from service.ratings import integrity

router = APIRouter(tags=["operations"])


@router.get("/health", summary="The process is up")
async def health(who: Anyone) -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="The database is reachable and migrated, its guards are in place, and the signing "
    "key and anchor file (when configured) can be used",
    response_model=None,
)
def ready(who: Anyone, engine: EngineDep, settings: SettingsDep) -> dict[str, str] | Response:
    try:
        current = is_current(engine)
        with engine.connect() as conn:
            missing = missing_guards(conn) if current else []
    except SQLAlchemyError as exc:
        return problem_response(503, "Database unreachable", type(exc).__name__)
    if not current:
        return problem_response(503, "Database not migrated", "run the migrations")
    if missing:
        return problem_response(
            503,
            "Database guards missing",
            f"missing or altered: {', '.join(missing)}; restarting the service (or any "
            "credit-rating command) restores them; then run `credit-rating verify`",
        )
    if settings.signing_key is not None:  # else every publish would fail
        try:
            integrity.load_signing_key(settings.signing_key)
        except NotConfigured:  # the reason names a server path: for the operator, not the caller
            return problem_response(
                503, "Signing key unusable", "CREDIT_SIGNING_KEY cannot be used: see `verify`"
            )
    anchor = settings.anchor_file
    if anchor is not None and not os.access(anchor if anchor.exists() else anchor.parent, os.W_OK):
        return problem_response(503, "Anchor file not writable", "CREDIT_ANCHOR_FILE")
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(who: Anyone) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
