"""Random-inspection draws (双随机): a supervisor draws; anyone reads a draw whole, to rerun it.

A draw's record holds everything a rerun needs (docs/draws.md): the population with grades,
the weights, the count, the seed, the procedure and the snapshot drawn from.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Path
from pydantic import Field

from service.api.caches.responses import cached
from service.api.deps import Anyone, EngineDep, OptionalYear, SettingsDep, Supervisor
from service.api.problems import responses
from service.api.schemas import Strict, Year
from service.core import clock
from service.core.database import reading, writing
from service.ratings import draws

SEED = r"^[!-~]{1,128}$"
"""A given seed: 1–128 printable ASCII characters, no spaces (what a shell passes unchanged)."""

DrawId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class DrawRequest(Strict):
    year: Year = Field(description="The year whose latest published grades are drawn from")
    count: Annotated[int, Field(ge=1, le=1_000_000)]
    seed: Annotated[str, Field(pattern=SEED)] | None = Field(
        default=None, description="Omit it: the service takes 128 bits from `secrets`"
    )


class DrawnPublic(Strict):
    uscc: str
    grade: str
    key: str = Field(description="sha256 of `seed:uscc` (hex): the rank within the grade")


class DrawSummary(Strict):
    """A draw without its population (GET /v1/draws/{id} has it)."""

    id: int
    year: int
    revision: int
    snapshot_hash: str
    scale: str
    procedure: str
    count: int
    seed: str
    seed_source: str
    weights: dict[str, str]
    excluded: list[str] = Field(description="Closed institutions: never drawn")
    quotas: dict[str, int]
    drawn: list[DrawnPublic]
    created_at: datetime

    @classmethod
    def of(cls, record: dict[str, Any]) -> Self:
        return cls.model_validate({f: record[f] for f in cls.model_fields})


class DrawPublic(DrawSummary):
    population: list[tuple[str, str]] = Field(
        description="Every institution that could be drawn, as [uscc, grade]"
    )


router = APIRouter(prefix="/v1/draws", tags=["draws"])


@router.post(
    "",
    status_code=201,
    response_model=DrawPublic,
    responses=responses(401, 403, 404, 422),
    summary="Draw institutions for the next random inspections from a year's published grades",
)
def create_draw(
    body: DrawRequest, who: Supervisor, engine: EngineDep, settings: SettingsDep
) -> DrawPublic:
    """Weights per grade from CREDIT_DRAW_WEIGHTS (`all`: always drawn); closed institutions
    are never drawn. The record is stored write-once and published."""
    with writing(engine) as conn:
        record = draws.make_draw(
            conn,
            year=body.year,
            count=body.count,
            weights=settings.draw_weight_map,
            seed=body.seed,
            by=who.name,
            at=clock.now(),
        )
    return DrawPublic.of(record)


@router.get(
    "",
    response_model=list[DrawSummary],
    responses=responses(401, 422),
    summary="Draws, newest first (of one year's grades with ?year=)",
)
@cached(query=["year"])
def list_draws(who: Anyone, engine: EngineDep, year: OptionalYear = None) -> list[DrawSummary]:
    with reading(engine) as conn:
        return [DrawSummary.of(r) for r in draws.listing(conn, year=year)]


@router.get(
    "/{draw_id}",
    response_model=DrawPublic,
    responses=responses(401, 404, 422),
    summary="One draw, with everything needed to rerun it (docs/draws.md)",
)
@cached()
def read_draw(draw_id: DrawId, who: Anyone, engine: EngineDep) -> DrawPublic:
    with reading(engine) as conn:
        return DrawPublic.of(draws.get(conn, draw_id))


def as_json(record: dict[str, Any]) -> str:
    """A draw's record as the API publishes it (what `credit-rating draw --format json` prints)."""
    return json.dumps(DrawPublic.of(record).model_dump(mode="json"), ensure_ascii=False, indent=2)
