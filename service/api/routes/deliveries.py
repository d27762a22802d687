"""Deliveries to the city platform: supervisors read their status, `sharing` runs them.

A run goes on in the background (`service.sharing.delivery.Background`, one per app, made at
the first POST): `POST /run` answers 202 at once with where to follow it (`Location:
/v1/deliveries?year=…`, the batches' states, read from the database by any worker). At most
one run at a time per process: a POST while one runs answers 202 with that run when it covers
the year asked (`started: false`), and 409 when it does not. When the service shuts down, the
router's lifespan stops the run (after the attempt in flight) and waits for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response

from service.api.deps import EngineDep, OptionalYear, SettingsDep, Sharer, Supervisor
from service.api.problems import responses
from service.api.schemas import DeliveryPublic, DeliveryRunStarted
from service.core.database import reading
from service.sharing import delivery, outbox

_making = threading.Lock()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    background: delivery.Background | None = getattr(app.state, "deliveries", None)
    if background is not None:
        await asyncio.to_thread(background.close)


router = APIRouter(prefix="/v1/deliveries", tags=["sharing"], lifespan=_lifespan)


def _background(app: FastAPI, engine: EngineDep, settings: SettingsDep) -> delivery.Background:
    with _making:
        background: delivery.Background | None = getattr(app.state, "deliveries", None)
        if background is None:
            background = app.state.deliveries = delivery.Background(engine, settings)
        return background


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
    status_code=202,
    response_model=DeliveryRunStarted,
    responses={
        202: {
            "description": "A run is under way (this one started it, or joined it)",
            "headers": {
                "Location": {
                    "description": "Where to follow it: the batches' states",
                    "schema": {"type": "string"},
                }
            },
        },
        **responses(401, 403, 409, 422),
    },
    summary="Send what is pending to the city platform, in the background",
)
def run_deliveries(
    who: Sharer,
    request: Request,
    response: Response,
    engine: EngineDep,
    settings: SettingsDep,
    year: OptionalYear = None,
) -> DeliveryRunStarted:
    run, started = _background(request.app, engine, settings).start(year)
    follow = "/v1/deliveries" + ("" if run.year is None else f"?year={run.year}")
    response.headers["Location"] = follow
    return DeliveryRunStarted(
        run_id=run.id,
        year=run.year,
        started=started,
        started_at=run.started_at,
        attempts=run.attempts,
        progress=follow,
    )
