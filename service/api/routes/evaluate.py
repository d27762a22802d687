"""Dry runs: what grades would be under other findings or a candidate rule set. Nothing stored."""

from __future__ import annotations

from fastapi import APIRouter

from scoring.rules import parse_rules
from service.api.deps import EngineDep, Reader, RulesDep, SettingsDep
from service.api.problems import responses
from service.api.schemas import EvaluateRequest, EvaluateResponse
from service.core.database import reading
from service.ratings.dry_run import dry_run

router = APIRouter(prefix="/v1", tags=["ratings"])


@router.post(
    "/evaluate",
    response_model=EvaluateResponse,
    responses=responses(401, 403, 404, 422),
    summary="Rate a year with supplied findings or a candidate rule set; compare to published",
)
def evaluate(
    body: EvaluateRequest, who: Reader, engine: EngineDep, rules: RulesDep, settings: SettingsDep
) -> EvaluateResponse:
    candidate = (
        parse_rules(body.rules, max_values=settings.max_rule_values)
        if body.rules is not None
        else rules
    )
    force = candidate.in_force(body.year, body.scale or settings.scale, as_of=body.as_of)
    findings = None if body.findings is None else [f.model_dump() for f in body.findings]
    with reading(engine) as conn:
        result = dry_run(conn, force=force, findings=findings)
    return EvaluateResponse.of(result)
