"""The rules in force for a year: what each indicator is worth, with references and marks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from service.api.deps import Anyone, RulesDep, SettingsDep, YearQuery
from service.api.problems import responses
from service.api.schemas import ScaleName

router = APIRouter(prefix="/v1", tags=["rules"])


@router.get(
    "/rules",
    responses=responses(401, 422),
    summary="The rules in force in a year (indicators, vetoes, bands, version and hash)",
)
def rules_in_force(
    who: Anyone,
    rules: RulesDep,
    settings: SettingsDep,
    year: YearQuery,
    scale: Annotated[ScaleName | None, Query()] = None,
) -> dict[str, Any]:
    force = rules.in_force(year, scale or settings.scale)
    return {**force.as_data(), "rules_hash": force.content_hash}
