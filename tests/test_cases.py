"""Rule cases in OpenFisca's style: tests/cases/*.yaml, each case a sentence a supervisor can check.

A case rates ONE institution for one year (on the default four-class scale unless it names
`scale`) from its findings, and states the expected score, grade, vetoes and the points kept
by the indicators it touches; every indicator it does not list must keep its full points.
The expectations are worked out by hand from docs/measure.md, never copied from the engine.

The meta-tests below fail when the cases stop covering the measure: every indicator and
veto of rules/, a cap (扣完为止) for every per-unit indicator, a revoked finding, a finding of
another year, and both sides of every grade boundary on both scales.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from scoring.engine import rate
from scoring.rules import Mode
from scoring.shipped import RULES_DIR
from scoring.standing import CLOSED_REASON, marked, standing
from tests import oracle
from tests.strategies import RULES, findings_frame, institutions_frame, make_uscc

CASES_DIR = Path(__file__).parent / "cases"
USCC = make_uscc("CAE000001")

INDICATOR_CODES = {i.code for i in RULES.indicators}
VETO_CODES = {v.code for v in RULES.vetoes}
SCALE_CODES = {s.code for s in RULES.scales}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CaseFinding(_Strict):
    indicator: str
    occurred_on: date
    count: Annotated[int, Field(ge=1)] = 1
    status: Literal["active", "revoked"] = "active"

    @field_validator("indicator")
    @classmethod
    def _known_code(cls, code: str) -> str:
        if code not in INDICATOR_CODES | VETO_CODES:
            raise ValueError(f"{code!r} is neither an indicator nor a veto of rules/")
        return code

    def counts_in(self, year: int) -> bool:
        # and not before the measure came into force: it is not retroactive
        return (
            self.status == "active"
            and self.occurred_on.year == year
            and self.occurred_on >= RULES.info.issued_on
        )


class Case(_Strict):
    name: Annotated[str, Field(min_length=8)]
    year: Annotated[int, Field(ge=2022, le=2100)]
    scale: str | None = None
    status: Literal["operating", "suspended", "closed"] = "operating"
    findings: list[CaseFinding]
    score: Annotated[int, Field(ge=0, le=1000)] | None = None  # none for a closed institution
    grade: Annotated[str, Field(pattern=r"^[A-Z]$")] | None = None
    vetoes: list[str] = []
    points: dict[str, Annotated[int, Field(ge=0)]] = {}

    @model_validator(mode="after")
    def _graded_unless_closed(self) -> Self:
        graded = self.score is not None and self.grade is not None
        if self.status == "closed" and (self.score is not None or self.grade is not None):
            raise ValueError("a closed institution is not rated: give no score or grade")
        if self.status != "closed" and not graded:
            raise ValueError("score and grade are required")
        return self

    @model_validator(mode="after")
    def _known_codes(self) -> Self:
        if self.scale is not None and self.scale not in SCALE_CODES:
            raise ValueError(f"unknown scale {self.scale!r} (known: {sorted(SCALE_CODES)})")
        for code in self.vetoes:
            if code not in VETO_CODES:
                raise ValueError(f"vetoes: {code!r} is not a veto of rules/")
        if len(set(self.vetoes)) != len(self.vetoes):
            raise ValueError("vetoes: a veto is listed twice")
        for code in self.points:
            if code not in INDICATOR_CODES:
                raise ValueError(f"points: {code!r} is not an indicator of rules/")
        return self

    @property
    def scale_code(self) -> str:
        return self.scale or RULES.info.default_scale

    def units(self, code: str) -> int:
        """Units counted against `code` in the case's year."""
        return sum(f.count for f in self.findings if f.indicator == code and f.counts_in(self.year))


def raw_cases() -> list[tuple[str, int, Any]]:
    found = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(document, list), f"{path.name}: expected a list of cases"
        found += [(path.name, i, raw) for i, raw in enumerate(document)]
    return found


RAW = raw_cases()


def all_cases() -> list[Case]:
    return [Case.model_validate(raw) for _, _, raw in RAW]


def full_points(year: int) -> dict[str, int]:
    return {i.code: i.points for i in RULES.in_force(year).indicators}


@pytest.mark.parametrize(
    ("file", "index", "raw"), RAW, ids=[f"{file[:-5]}-{i:02d}" for file, i, _ in RAW]
)
def test_case(file: str, index: int, raw: Any) -> None:
    case = Case.model_validate(raw)
    where = f"{file} case {index}: {case.name}"
    rows = [{"uscc": USCC, **f.model_dump()} for f in case.findings]
    findings = findings_frame(rows)
    institutions = institutions_frame([USCC]).assign(status=case.status)
    split = standing(institutions, findings)
    if case.status == "closed":  # listed as not rated, with the reason; never graded
        assert split.rated.empty and split.findings.empty, where
        assert split.not_rated() == [
            {"uscc": USCC, "name": institutions["name"][0], "reason": CLOSED_REASON}
        ], where
        listed = marked(rate(split.rated, split.findings, RULES, case.year), split)
        assert listed["status"].tolist() == ["closed"] and listed["grade"].isna().all(), where
        return
    assert case.score is not None and case.grade is not None
    expected_points = full_points(case.year) | case.points
    for code, kept in case.points.items():
        assert kept <= full_points(case.year)[code], f"{where}: {code} keeps more than its points"
    assert sum(expected_points.values()) == case.score, f"{where}: points do not add up to score"

    result = rate(split.rated, split.findings, RULES, case.year, scale=case.scale)
    assert len(result) == 1
    assert marked(result, split)["status"].tolist() == [case.status], where  # suspended: marked
    got = result.iloc[0]
    assert int(got["score"]) == case.score, where
    assert got["grade"] == case.grade, where
    assert set(got["vetoes"]) == set(case.vetoes), where
    assert bool(got["vetoed"]) == bool(case.vetoes), where
    assert {code: int(got[code]) for code in expected_points} == expected_points, where

    mine = oracle.rate_one(USCC, findings.to_dict("records"), RULES, case.year, case.scale)
    assert (mine.score, mine.grade, set(mine.vetoes)) == (case.score, case.grade, set(case.vetoes))
    assert mine.points == expected_points, where


# --- the cases themselves --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"scor": 1000},  # a typo in a case key
        {"findings": [{"indicatr": "licence_valid", "occurred_on": date(2023, 1, 1)}]},
        {"findings": [{"indicator": "licence_vaild", "occurred_on": date(2023, 1, 1)}]},
        {"findings": [{"indicator": "licence_valid", "occurred_on": "2023-1-1"}]},
        {"findings": [{"indicator": "venue_safe", "occurred_on": date(2023, 1, 1), "count": 0}]},
        {"findings": [{"indicator": "venue_safe", "occurred_on": date(2023, 1, 1), "count": "2"}]},
        {"findings": [{"indicator": "venue_safe", "occurred_on": date(2023, 1, 1), "status": "x"}]},
        {"points": {"venue_saf": 30}},
        {"vetoes": ["veto_major_accidnet"]},
        {"scale": "six"},
        {"score": "1000"},
        {"grade": "AA"},
    ],
)
def test_a_typo_in_a_case_fails(bad: dict[str, Any]) -> None:
    good: dict[str, Any] = {
        "name": "无任何问题记录：1000分，A类",
        "year": 2023,
        "findings": [],
        "score": 1000,
        "grade": "A",
    }
    Case.model_validate(good)  # the base case itself is valid
    with pytest.raises(ValidationError):
        Case.model_validate(good | bad)


def test_case_names_are_unique() -> None:
    names = [case.name for case in all_cases()]
    assert len(names) == len(set(names))


def rule_file_codes(file: str, key: str) -> list[str]:
    document = yaml.safe_load((RULES_DIR / file).read_text(encoding="utf-8"))
    return [item["code"] for item in document[key]]


def test_every_indicator_of_the_rules_has_a_case() -> None:
    cases = all_cases()
    missing = [
        code
        for code in rule_file_codes("indicators.yaml", "indicators")
        if not any(
            case.units(code) > 0 and case.points.get(code, 10**6) < full_points(case.year)[code]
            for case in cases
        )
    ]
    assert not missing, f"indicators without a case that deducts from them: {missing}"


def test_every_veto_of_the_rules_has_a_case() -> None:
    cases = all_cases()
    missing = [
        code
        for code in rule_file_codes("vetoes.yaml", "vetoes")
        if not any(case.units(code) > 0 and code in case.vetoes for case in cases)
    ]
    assert not missing, f"vetoes without a case: {missing}"


def test_every_per_unit_indicator_has_a_cap_case() -> None:
    """A case whose units × deduction exceed the indicator's points and that keeps 0 (扣完为止)."""
    cases = all_cases()
    missing = []
    for indicator in RULES.indicators:
        if indicator.mode is not Mode.PER:
            continue
        code = indicator.code

        def caps(case: Case, code: str = code) -> bool:
            force = {i.code: i for i in RULES.in_force(case.year).indicators}[code]
            assert force.deduction is not None
            return case.units(code) * force.deduction > force.points and case.points.get(code) == 0

        if not any(caps(case) for case in cases):
            missing.append(code)
    assert not missing, f"per-unit indicators without a cap case: {missing}"


def test_cases_cover_a_revoked_finding_and_another_years_finding() -> None:
    findings = [(case, f) for case in all_cases() for f in case.findings]
    revoked = any(f.status == "revoked" and f.occurred_on.year == c.year for c, f in findings)
    assert revoked, "no case has a revoked finding dated in the case's year"
    other_year = any(f.status == "active" and f.occurred_on.year != c.year for c, f in findings)
    assert other_year, "no case has an active finding dated in another year"


def test_cases_cover_both_sides_of_every_grade_boundary_on_both_scales() -> None:
    """Each band floor above 0, on any scale, and 10 points below it, rated on every scale."""
    floors = {b.min for s in RULES.scales for bands in s.bands.values() for b in bands if b.min}
    wanted = floors | {floor - 10 for floor in floors}
    assert wanted == {980, 970, 950, 940, 900, 890, 800, 790}
    covered = {(case.scale_code, case.score) for case in all_cases() if not case.vetoes}
    missing = sorted((s.code, score) for s in RULES.scales for score in wanted)
    missing = [pair for pair in missing if pair not in covered]
    assert not missing, f"(scale, score) pairs without a case: {missing}"


def test_cases_use_every_scale_and_the_default() -> None:
    cases = all_cases()
    assert {case.scale for case in cases} >= {None, *SCALE_CODES}
