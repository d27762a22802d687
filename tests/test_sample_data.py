"""The sample district in data/ says what the bureau's 2023 report says, and rates like a district.

The seed report (西青区教育局2023年行政执法情况报告) gives the only hard facts we have about
the district: 16 institutions; in 2023, 8 "双随机、一公开" tasks covering 15 of them, 2 ordered
to rectify and 1 penalty, the district's first against a training institution. These tests
pin those facts, and pin a believable grade distribution, so the sample cannot drift.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scoring import inputs
from scoring.engine import rate
from scoring.input_files import read_inputs
from scoring.inputs import validate
from scoring.rules import RuleSet
from scoring.shipped import load_rules
from scoring.uscc import ALPHABET, is_valid
from scoring.uscc_columns import valid

DATA = Path(__file__).resolve().parent.parent / "data"
INSTITUTION_COLUMNS = list(inputs.INSTITUTION_COLUMNS.order)
FINDING_COLUMNS = list(inputs.FINDING_COLUMNS.order)
SOURCES = {"inspection", "complaint", "penalty", "self_report", "platform", "other"}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


@pytest.fixture(scope="module")
def institutions() -> pd.DataFrame:
    return pd.read_csv(DATA / "institutions.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def findings() -> pd.DataFrame:
    return pd.read_csv(DATA / "findings.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def normalised(rules: RuleSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sample as every entry point reads it: checked and normalised by scoring.input_files."""
    return read_inputs(DATA / "institutions.csv", DATA / "findings.csv", rules=rules)


def of_year(findings: pd.DataFrame, year: int) -> pd.DataFrame:
    return findings[findings["occurred_on"].str.startswith(f"{year}-")]


def test_files_pass_input_validation(
    institutions: pd.DataFrame, findings: pd.DataFrame, rules: RuleSet
) -> None:
    checked, found = validate(
        institutions,
        findings,
        rules=rules,
        institutions_file="institutions.csv",
        findings_file="findings.csv",
    )
    assert len(checked) == 16
    assert len(found) == len(findings)
    assert found["finding_id"].tolist() == findings["finding_id"].tolist()


def test_files_have_exactly_the_contract_columns(
    institutions: pd.DataFrame, findings: pd.DataFrame
) -> None:
    assert list(institutions.columns) == INSTITUTION_COLUMNS
    assert list(findings.columns) == FINDING_COLUMNS


def test_sixteen_operating_institutions_registered_in_xiqing(institutions: pd.DataFrame) -> None:
    assert len(institutions) == 16
    assert (institutions["district_code"] == "120111").all()
    assert (institutions["status"] == "operating").all()
    assert institutions["name"].str.startswith("天津市西青区").all()
    assert institutions["name"].is_unique
    assert institutions["licence_no"].is_unique
    assert institutions["licence_no"].str.fullmatch(r"教民112011170000\d\d号").all()


def test_credit_codes_are_valid_unique_and_from_xiqing(institutions: pd.DataFrame) -> None:
    codes = institutions["uscc"]
    assert codes.is_unique
    assert codes.str.startswith("52120111").all()
    assert all(len(c) == 18 and set(c) <= set(ALPHABET) for c in codes)
    assert all(is_valid(c) for c in codes)
    assert valid(codes).all()


def test_findings_are_well_formed(
    institutions: pd.DataFrame, findings: pd.DataFrame, rules: RuleSet
) -> None:
    known = {i.code for i in rules.indicators} | {v.code for v in rules.vetoes}
    assert findings["finding_id"].is_unique
    assert findings["finding_id"].str.fullmatch(r"XQ-20\d\d-\d{4}").all()
    # The id's year is the year the finding counts for.
    assert (findings["finding_id"].str[3:7] == findings["occurred_on"].str[:4]).all()
    assert findings["uscc"].isin(institutions["uscc"]).all()
    assert findings["indicator"].isin(known).all()
    assert set(findings["source"]) <= SOURCES
    assert set(findings["status"]) <= {"active", "revoked"}
    assert (findings["count"].astype(int) >= 1).all()
    dates = pd.to_datetime(findings["occurred_on"], format="%Y-%m-%d")
    assert set(dates.dt.year) == {2022, 2023, 2024}


def test_2023_had_eight_random_inspection_tasks_covering_15_institutions(
    findings: pd.DataFrame,
) -> None:
    inspections = of_year(findings, 2023).query("source == 'inspection'")
    assert inspections["reference"].str.fullmatch(r"西青教查〔2023〕\d+号").all()
    assert inspections["reference"].nunique() == 8
    assert inspections["uscc"].nunique() == 15


def test_2023_two_institutions_were_ordered_to_rectify(findings: pd.DataFrame) -> None:
    orders = of_year(findings, 2023)
    orders = orders[orders["note"].str.contains("责令整改")]
    assert orders["uscc"].nunique() == 2
    assert (orders["source"] == "inspection").all()


def test_2023_one_penalty_the_districts_first(findings: pd.DataFrame) -> None:
    penalties = findings[findings["source"] == "penalty"]
    assert set(penalties["occurred_on"].str[:4]) == {"2023"}  # none before: the first case
    assert penalties["reference"].nunique() == 1
    assert penalties["reference"].iloc[0] == "西青教罚〔2023〕1号"
    assert penalties["uscc"].nunique() == 1
    # The penalty itself, and the violation it punished.
    assert (penalties["indicator"] == "no_penalties").sum() == 1
    assert (penalties["indicator"] != "no_penalties").sum() >= 1
    no_penalties = findings[findings["indicator"] == "no_penalties"]
    assert (no_penalties["source"] == "penalty").all()


def test_revoked_findings_and_complaints_are_present(findings: pd.DataFrame) -> None:
    revoked = findings[findings["status"] == "revoked"]
    assert len(revoked) >= 1
    assert revoked["note"].str.contains("异议成立").all()
    assert (of_year(findings, 2023)["status"] == "revoked").any()
    assert (findings["source"] == "complaint").sum() >= 4


@pytest.mark.parametrize(
    ("year", "expected"),
    [
        (2022, {"A": 11, "B": 3, "C": 2, "D": 0}),  # only 3–31 December counts
        (2023, {"A": 9, "B": 4, "C": 2, "D": 1}),
        (2024, {"A": 10, "B": 3, "C": 2, "D": 1}),
    ],
)
def test_grades_look_like_a_real_district(
    normalised: tuple[pd.DataFrame, pd.DataFrame],
    rules: RuleSet,
    year: int,
    expected: dict[str, int],
) -> None:
    rated = rate(*normalised, rules, year)
    counts = rated["grade"].value_counts()
    grades = {g: int(counts.get(g, 0)) for g in "ABCD"}
    assert grades["A"] + grades["B"] >= 12  # mostly A and B
    assert 1 <= grades["C"] <= 3  # a few C
    assert grades["D"] <= 2
    assert not rated["vetoed"].any()
    assert grades == expected  # data/README.md publishes these figures


def test_the_2023_penalty_case_is_graded_d(
    findings: pd.DataFrame, normalised: tuple[pd.DataFrame, pd.DataFrame], rules: RuleSet
) -> None:
    rated = rate(*normalised, rules, 2023)
    punished = findings.loc[findings["source"] == "penalty", "uscc"].iloc[0]
    row = rated.set_index("uscc").loc[punished]
    assert row["grade"] == "D"
    assert row["no_penalties"] == 0


def test_revoked_finding_costs_nothing(
    findings: pd.DataFrame, normalised: tuple[pd.DataFrame, pd.DataFrame], rules: RuleSet
) -> None:
    revoked = findings[(findings["status"] == "revoked")].iloc[0]
    year = int(revoked["occurred_on"][:4])
    rated = rate(*normalised, rules, year).set_index("uscc")
    full = {i.code: i.points for i in rules.in_force(year).indicators}
    assert rated.loc[revoked["uscc"], revoked["indicator"]] == full[revoked["indicator"]]
