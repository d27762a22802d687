"""Request and response bodies of the HTTP API, named by role (`…Create`, `…Public`, `…Full`).

Requests are strict: an unknown field, a year outside the measure's range or a credit code with
a wrong check character is refused with 422 before any handler runs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from scoring import uscc as uscc_check
from scoring.explain import Explanation
from scoring.inputs import FindingSource, FindingStatus, InstitutionStatus
from scoring.inspections import InspectionResult
from scoring.lift import Lift
from scoring.rules import MAX_YEAR, MIN_YEAR
from scoring.shipped import known_scale, scale_names
from service.ratings.dry_run import DryRun, GradeChange
from service.ratings.publicity import Publicity
from service.ratings.risk import Risk
from service.ratings.snapshots import Snapshot


def _valid_uscc(code: str) -> str:
    problem = uscc_check.problem(code)
    if problem:
        raise ValueError(problem)
    return code


USCC = Annotated[
    str,
    Field(min_length=18, max_length=18, examples=["52120111MJ0627485A"]),
    AfterValidator(_valid_uscc),
]
Year = Annotated[int, Field(ge=MIN_YEAR, le=MAX_YEAR, examples=[2023])]
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL: refuse it up front, as 422
Text = Annotated[str, Field(max_length=2000, pattern=NO_NUL)]
Reason = Annotated[
    str, Field(min_length=1, max_length=2000, pattern=NO_NUL, examples=["复议撤销原处罚决定"])
]


def _list_scales(schema: dict[str, Any]) -> None:
    schema["enum"] = list(scale_names())


ScaleName = Annotated[
    str, Field(max_length=64, json_schema_extra=_list_scales), AfterValidator(known_scale)
]
Day = Annotated[date, Field(ge=date(MIN_YEAR, 1, 1), le=date(MAX_YEAR, 12, 31))]


MAX_RULES_DEPTH = 32
"""Nesting of candidate rules sent to /v1/evaluate (the shipped ones are 5 levels deep)."""
MAX_WHOLE = 2**63 - 1
"""Largest whole number in candidate rules: what SQLite and PostgreSQL can compare with."""


def _plain_data(value: dict[str, Any]) -> dict[str, Any]:
    """Candidate rules as the rule files could hold them: refuses (as 422, not as a 500 from
    wherever the value would have ended up) deep nesting, numbers no database can hold,
    NaN and infinities, and NUL characters."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_RULES_DEPTH:
            raise ValueError(f"nested deeper than {MAX_RULES_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, bool):
            pass
        elif isinstance(item, int) and abs(item) > MAX_WHOLE:
            raise ValueError(f"a whole number beyond ±{MAX_WHOLE}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN or an infinite number")
        elif isinstance(item, str) and "\x00" in item:
            raise ValueError("a NUL character")
    return value


JSON_COLUMNS = ("vetoes", "points")
RISK_FIELDS = ("risk", "risk_lower", "risk_upper")
"""Columns of a stored snapshot row that hold JSON text."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InstitutionCreate(Strict):
    uscc: USCC
    name: Annotated[
        str,
        Field(
            min_length=1, max_length=200, pattern=NO_NUL, examples=["天津市西青区启航文化培训学校"]
        ),
    ]
    district_code: Annotated[str, Field(pattern=r"^\d{6}$", examples=["120111"])]
    licence_no: Annotated[
        str, Field(min_length=1, max_length=100, pattern=NO_NUL, examples=["教民11201117000001号"])
    ]
    address: Text = ""
    status: InstitutionStatus = InstitutionStatus.operating


class InstitutionPublic(InstitutionCreate):
    recorded_at: datetime
    recorded_by: str


class FindingCreate(Strict):
    finding_id: Annotated[
        str | None, Field(min_length=1, max_length=64, pattern=r"^[^#\s\x00][^\s\x00]*$")
    ] = None
    uscc: USCC
    indicator: Annotated[
        str, Field(max_length=64, pattern=NO_NUL, examples=["refunds_per_contract"])
    ]
    occurred_on: Day
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    source: FindingSource = FindingSource.other
    reference: Text = ""
    note: Text = ""


class FindingPublic(Strict):
    finding_id: str
    uscc: str
    indicator: str
    occurred_on: date
    count: int
    source: str
    reference: str
    status: FindingStatus
    note: str
    recorded_at: datetime
    recorded_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    revoke_reason: str | None


class Revocation(Strict):
    reason: Reason


class ImportWarning(Strict):
    """Worth a look, yet stored all the same; located like a problem of the input."""

    file: str
    row: int | None
    column: str | None
    value: str | None
    expected: str


class ImportReport(Strict):
    institutions_added: int
    institutions_updated: int
    findings_added: int
    findings_unchanged: int
    inspections_added: int = 0
    inspections_unchanged: int = Field(
        default=0, description="inspection register rows already on record, unchanged"
    )
    warnings: list[ImportWarning] = Field(
        default=[],
        description="e.g. a credit code registered outside its district_code, or whose "
        "organisation code fails its GB 11714 check; at most 1000 listed",
    )
    warnings_total: int = 0


class InspectionPublic(Strict):
    """One row of the inspection register (docs/inspections.md)."""

    task_id: str
    uscc: str
    inspected_on: date
    result: InspectionResult
    note: str
    recorded_at: datetime
    recorded_by: str


class ComputeRequest(Strict):
    scale: ScaleName | None = None


class PublishRequest(Strict):
    revision: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    reason: Reason | None = None


class NotRatedEntry(Strict):
    """A closed institution in a year's result: listed, never graded (scoring.standing)."""

    uscc: str
    name: str
    reason: str


class SnapshotPublic(Strict):
    year: int
    revision: int
    status: Literal["draft", "published"]
    scale: str
    ruleset_version: str
    rules_hash: str
    input_digest: str
    content_hash: str
    created_at: datetime
    supersedes: int | None
    reason: str | None
    published_at: datetime | None
    chain_hash: str | None
    # Ed25519 signature of the chain hash, checkable with GET /v1/signing-key (None: unsigned)
    signature: str | None = None
    key_fingerprint: str | None = None
    # A published revision's publicity period (公示期): its last day (objections are heard
    # until 24:00 Beijing time) and where to object; computed, never part of the hashes.
    publicity_ends_on: date | None = None
    objection_contact: str | None = None
    not_rated: list[NotRatedEntry] = Field(
        default=[], description="Closed institutions, listed as not rated, with the reason."
    )

    @field_validator("not_rated", mode="before")
    @classmethod
    def _stored_json(cls, value: Any) -> Any:
        """Stored as JSON text (NULL when none) in the snapshot."""
        if value is None:
            return []
        return json.loads(value) if isinstance(value, str) else value

    @classmethod
    def of(cls, snapshot: Snapshot, publicity: Publicity | None = None) -> SnapshotPublic:
        """The snapshot's public fields (its id and authors stay inside), with its publicity
        period when given (service.ratings.publicity)."""
        made = cls.model_validate(snapshot, from_attributes=True)
        if publicity is None:
            return made
        return made.model_copy(
            update={"publicity_ends_on": publicity.ends_on, "objection_contact": publicity.contact}
        )


def _stored(row: Mapping[str, Any], field: str) -> Any:
    """A field of a stored snapshot row: JSON text parsed, a missing status (NULL, or a row
    stored before statuses were recorded) read as operating."""
    if field == "status":
        return row.get("status") or "operating"
    return json.loads(row[field]) if field in JSON_COLUMNS else row[field]


class GradePublic(Strict):
    """What the public sees of one institution: its published grade, nothing else."""

    uscc: str
    name: str
    status: Literal["operating", "suspended"] = Field(
        default="operating", description="A suspended institution is rated and marked."
    )
    score: int
    grade: str
    vetoed: bool

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Self:
        """From a stored snapshot row, where vetoes and points are JSON text."""
        return cls.model_validate({f: _stored(row, f) for f in cls.model_fields})


class GradeFull(GradePublic):
    licence_no: str
    vetoes: list[str]
    points: dict[str, int]
    # With a calibrator (CREDIT_CALIBRATION_DIR): the probability of a serious outcome next
    # year for this score, and its 95% interval; None without one. The grade is unchanged.
    risk: float | None = None
    risk_lower: float | None = None
    risk_upper: float | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any], risk: Risk | None = None) -> Self:
        """From a stored snapshot row, with the risk of its score when there is one."""
        fields = [f for f in cls.model_fields if f not in RISK_FIELDS]
        values = {f: _stored(row, f) for f in fields}
        if risk is not None:
            values |= {"risk": risk.risk, "risk_lower": risk.lower, "risk_upper": risk.upper}
        return cls.model_validate(values)


class RatingPublic(Strict):
    snapshot: SnapshotPublic
    institutions: list[GradePublic]


class RatingFull(Strict):
    snapshot: SnapshotPublic
    institutions: list[GradeFull]


class InstitutionRating(Strict):
    snapshot: SnapshotPublic
    rating: GradeFull | GradePublic
    explanation: Explanation | None = None
    lift: Lift | None = Field(
        default=None,
        description="With the explanation: the points missing to the next grade up and the "
        "smallest sets of the year's findings whose revocation would reach it (null when the "
        "rules in force are no longer those the snapshot was rated with).",
    )


class HistoryEntry(Strict):
    year: int
    revision: int
    scale: str
    score: int
    grade: str
    vetoed: bool


class EvaluateFinding(Strict):
    uscc: USCC
    indicator: Annotated[str, Field(max_length=64, pattern=NO_NUL)]
    occurred_on: Day
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    status: FindingStatus = FindingStatus.active


class EvaluateRequest(Strict):
    """A dry run: rate `year` with supplied findings and/or a candidate rule set."""

    year: Year
    scale: ScaleName | None = None
    findings: Annotated[list[EvaluateFinding], Field(max_length=100_000)] | None = Field(
        default=None,
        description="Findings to rate instead of the stored ones for the year (all of them).",
    )
    rules: Annotated[dict[str, Any], AfterValidator(_plain_data)] | None = Field(
        default=None,
        description="A candidate rule set: file name -> content, as the files in rules/ "
        "(ruleset.yaml, indicators.yaml, vetoes.yaml, scales.yaml). At most "
        f"{MAX_RULES_DEPTH} levels deep; whole numbers within ±(2**63 − 1); no NaN, no "
        "infinity, no NUL.",
    )
    as_of: Day | None = Field(
        default=None,
        description="Rate with the values in force on this day instead of 31 December of "
        "`year`: a candidate rule set dated after the year (as `credit-rating calibrate` "
        "writes one) applied to the year's findings.",
    )


class EvaluateResponse(Strict):
    year: int
    scale: str
    ruleset_version: str
    rules_hash: str
    published_revision: int | None
    changes: int
    institutions: list[GradeChange]

    @classmethod
    def of(cls, run: DryRun) -> EvaluateResponse:
        return cls(
            year=run.force.year,
            scale=run.force.scale.code,
            ruleset_version=run.force.version,
            rules_hash=run.force.content_hash,
            published_revision=run.published_revision,
            changes=run.changes,
            institutions=run.institutions,
        )


class KeyInfo(Strict):
    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


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


class DeliveryRunStarted(Strict):
    """A delivery run in the background (`POST /v1/deliveries/run`, 202)."""

    run_id: str
    year: int | None  # None: every year
    started: bool  # False: a run already under way covers the year asked; this is that run
    started_at: datetime
    attempts: int  # answers from the platform so far
    progress: str  # where to follow it: the batches' states (also the Location header)
