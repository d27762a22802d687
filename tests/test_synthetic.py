"""Synthetic districts are reproducible, valid input, and look like supervision data.

Benchmarks and load tests trust `scoring.synthetic` to stand in for real districts: if its
codes were invalid, its frames differently shaped from validated input, or its mix absurd
(every institution a D), the figures measured on it would mean nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring import inputs
from scoring.engine import rate
from scoring.rules import Mode, RuleSet
from scoring.shipped import load_rules
from scoring.synthetic import DISTRICTS, synthetic_district
from scoring.uscc_columns import valid

YEAR = 2024
INSTITUTION_COLUMNS = list(inputs.INSTITUTION_COLUMNS.order)
FINDING_COLUMNS = list(inputs.FINDING_COLUMNS.order)
COMMON = {
    "fees_displayed",
    "fees_per_policy",
    "prepaid_fees_lawful",
    "model_contract_used",
    "receipts_match_contracts",
    "refunds_per_contract",
    "training_hours_lawful",
    "within_licensed_scope",
}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


@pytest.fixture(scope="module")
def district(rules: RuleSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_district(20_000, 200_000, year=YEAR, seed=11, rules=rules)


def test_same_seed_same_district(rules: RuleSet) -> None:
    a = synthetic_district(500, 4_000, year=YEAR, seed=3, rules=rules)
    b = synthetic_district(500, 4_000, year=YEAR, seed=3, rules=rules)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


def test_another_seed_another_district(rules: RuleSet) -> None:
    a = synthetic_district(500, 4_000, year=YEAR, seed=3, rules=rules)
    b = synthetic_district(500, 4_000, year=YEAR, seed=4, rules=rules)
    assert not a[0]["uscc"].equals(b[0]["uscc"])
    assert not a[1]["indicator"].equals(b[1]["indicator"])


@pytest.mark.parametrize(("n", "m"), [(1, 0), (1, 5), (37, 0), (1_000, 25_000)])
def test_sizes_and_frame_shape(rules: RuleSet, n: int, m: int) -> None:
    institutions, findings = synthetic_district(n, m, year=YEAR, seed=0, rules=rules)
    assert len(institutions) == n
    assert len(findings) == m
    assert list(institutions.columns) == INSTITUTION_COLUMNS
    assert list(findings.columns) == FINDING_COLUMNS
    assert isinstance(institutions.index, pd.RangeIndex)
    assert isinstance(findings.index, pd.RangeIndex)
    assert findings["occurred_on"].dtype == np.dtype("datetime64[us]")
    assert findings["count"].dtype == np.dtype("int64")
    for frame, columns in ((institutions, INSTITUTION_COLUMNS), (findings, FINDING_COLUMNS)):
        for column in columns:
            if column not in ("occurred_on", "count"):
                assert frame[column].dtype == "str", column
                assert not frame[column].isna().any(), column


def test_credit_codes_valid_unique_and_in_tianjin(
    district: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    institutions, findings = district
    codes = institutions["uscc"]
    assert valid(codes).all()
    assert codes.is_unique
    assert codes.str.startswith("52").all()
    assert (codes.str[2:8] == institutions["district_code"]).all()
    assert set(institutions["district_code"]) == {d[0] for d in DISTRICTS}
    assert findings["uscc"].isin(codes).all()
    assert findings["finding_id"].is_unique


def test_the_synthetic_district_passes_input_validation(rules: RuleSet) -> None:
    institutions, findings = synthetic_district(2_000, 30_000, year=YEAR, seed=5, rules=rules)
    checked_institutions, checked_findings = inputs.validate(
        institutions,
        findings,
        rules=rules,
        institutions_file="institutions",
        findings_file="findings",
    )
    pd.testing.assert_frame_equal(checked_institutions, institutions, check_dtype=False)
    pd.testing.assert_frame_equal(checked_findings, findings, check_dtype=False)


def test_mix_looks_like_supervision_data(
    district: tuple[pd.DataFrame, pd.DataFrame], rules: RuleSet
) -> None:
    institutions, findings = district
    # Most institutions are clean; a few offenders collect many findings.
    per_institution = findings["uscc"].value_counts()
    assert 1 - len(per_institution) / len(institutions) >= 0.55
    assert per_institution.max() >= 10 * per_institution.median()
    # Deductions pile up on the common indicators.
    assert findings["indicator"].value_counts().index[:5].isin(list(COMMON)).sum() >= 4
    assert findings["indicator"].isin(list(COMMON)).mean() > 0.4
    # Counts mostly 1-3, with a long tail; all-or-nothing findings and vetoes count once.
    assert findings["count"].min() == 1
    assert findings["count"].between(1, 3).mean() > 0.9
    assert findings["count"].max() > 10
    single = [i.code for i in rules.indicators if i.mode is Mode.ALL]
    single += [v.code for v in rules.vetoes]
    assert (findings.loc[findings["indicator"].isin(single), "count"] == 1).all()
    # ~2% revoked, ~5% in the years either side, vetoes rare.
    assert findings["status"].isin(["active", "revoked"]).all()
    assert findings["status"].eq("revoked").mean() == pytest.approx(0.02, abs=0.005)
    years = findings["occurred_on"].dt.year
    assert set(years) == {YEAR - 1, YEAR, YEAR + 1}
    assert (years != YEAR).mean() == pytest.approx(0.05, abs=0.01)
    assert findings["indicator"].str.startswith("veto_").mean() < 1e-3
    # Sources follow the contract, and some follow from the indicator.
    assert set(findings["source"]) <= set(inputs.FINDING_SOURCES)
    complaints = findings["indicator"] == "no_verified_complaints"
    assert (findings.loc[complaints, "source"] == "complaint").all()
    revoked = findings["status"] == "revoked"
    assert (findings.loc[revoked, "note"] != "").all()
    assert (findings.loc[~revoked, "note"] == "").all()
    inspected = findings["source"] == "inspection"
    assert findings.loc[inspected, "reference"].str.contains("教查〔").all()


def test_the_engine_rates_a_small_synthetic_district(rules: RuleSet) -> None:
    institutions, findings = synthetic_district(300, 2_000, year=YEAR, seed=9, rules=rules)
    rated = rate(institutions, findings, rules, YEAR)
    assert len(rated) == 300
    assert rated["uscc"].tolist() == institutions["uscc"].tolist()
    assert rated["score"].between(0, 1000).all()
    assert set(rated["grade"]) <= {"A", "B", "C", "D"}
    assert rated["grade"].eq("A").any()


def test_a_district_with_realistic_numbers_is_mostly_a_and_b(rules: RuleSet) -> None:
    # Xiqing: 16 institutions, a few dozen findings a year. Scale that up.
    institutions, findings = synthetic_district(5_000, 6_000, year=YEAR, seed=2, rules=rules)
    grades = rate(institutions, findings, rules, YEAR)["grade"].value_counts(normalize=True)
    assert grades.get("A", 0) + grades.get("B", 0) > 0.8
    assert 0 < grades.get("C", 0) < 0.15
    assert grades.get("D", 0) < 0.1
