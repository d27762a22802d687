"""Deliveries to the city platform: supervisors read their status, `sharing` runs them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from service.api.deps import EngineDep, SettingsDep, Supervisor, requires
from service.api.keys import Principal, Role
from service.api.problems import responses
from service.api.schemas import Strict
from service.core.database import reading
from service.sharing import delivery, outbox

router = APIRouter(prefix="/v1/deliveries", tags=["sharing"])

YearQuery = Annotated[int | None, Query(ge=2022, le=2100)]
Sharer = Annotated[Principal, Depends(requires(Role.SHARING, Role.SUPERVISOR))]


class DeliveryPublic(Strict):
    batch_id: str
    year: int
    revision: int
    batch_no: int
    batch_count: int
    records: int
    state: str
    attempts: int
    last_error: str | None
    receipt_id: str | None
    created_at: datetime
    delivered_at: datetime | None


class RunReport(Strict):
    delivered: list[str]
    dead: list[str]
    pending: list[str]
    complete: bool


@router.get(
    "",
    response_model=list[DeliveryPublic],
    responses=responses(401, 403, 422),
    summary="Each batch's delivery state, attempts, last error and receipt",
)
def list_deliveries(
    who: Supervisor, engine: EngineDep, year: YearQuery = None
) -> list[DeliveryPublic]:
    with reading(engine) as conn:
        return [DeliveryPublic(**b) for b in outbox.status(conn, year=year)]


@router.post(
    "/run",
    response_model=RunReport,
    responses=responses(401, 403, 409, 422),
    summary="Send what is pending to the city platform now",
)
def run_deliveries(
    who: Sharer, engine: EngineDep, settings: SettingsDep, year: YearQuery = None
) -> RunReport:
    try:
        platform, policy = delivery.from_settings(settings)
    except delivery.NotConfigured as exc:
        raise outbox.OutboxError(str(exc)) from None
    try:
        report = delivery.run(engine, platform, year=year, policy=policy)
    finally:
        platform.close()
    return RunReport(
        delivered=report.delivered,
        dead=report.dead,
        pending=report.pending,
        complete=report.complete,
    )
