"""Liveness, readiness and Prometheus metrics, for whoever runs the service."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from service.api.deps import Anyone, EngineDep
from service.api.problems import problem_response
from service.core.migrate import is_current

router = APIRouter(tags=["operations"])


@router.get("/health", summary="The process is up")
async def health(who: Anyone) -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="The database is reachable and migrated", response_model=None)
def ready(who: Anyone, engine: EngineDep) -> dict[str, str] | Response:
    try:
        current = is_current(engine)
    except SQLAlchemyError as exc:
        return problem_response(503, "Database unreachable", type(exc).__name__)
    if not current:
        return problem_response(503, "Database not migrated", "run the migrations")
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(who: Anyone) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
