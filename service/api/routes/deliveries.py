"""Deliveries to the city platform: supervisors read their status, `sharing` runs them."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import EngineDep, OptionalYear, SettingsDep, Sharer, Supervisor
from service.api.problems import responses
from service.api.schemas import DeliveryPublic, DeliveryRun
from service.core.database import reading
from service.sharing import delivery, outbox

router = APIRouter(prefix="/v1/deliveries", tags=["sharing"])


@router.get(
    "",
    response_model=list[DeliveryPublic],
    responses=responses(401, 403, 422),
    summary="Each batch's delivery state, attempts, last error and receipt",
)
def list_deliveries(
    who: Supervisor, engine: EngineDep, year: OptionalYear = None
) -> list[DeliveryPublic]:
    with reading(engine) as conn:
        return [DeliveryPublic(**b) for b in outbox.status(conn, year=year)]


@router.post(
    "/run",
    response_model=DeliveryRun,
    responses=responses(401, 403, 409, 422),
    summary="Send what is pending to the city platform now",
)
def run_deliveries(
    who: Sharer, engine: EngineDep, settings: SettingsDep, year: OptionalYear = None
) -> DeliveryRun:
    return DeliveryRun.of(delivery.deliver(engine, settings, year=year))
