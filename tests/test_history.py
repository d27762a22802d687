"""Serious outcomes follow their definition, and synthetic histories are sound (issue 10).

Calibration measures how a year's grade foresees a serious outcome the next year: if the
outcome were computed wrongly, or the synthetic history it is tried on were not reproducible,
not valid input, or without any link between its hidden risk and its outcomes, the figures
would mean nothing. All the data made here are synthetic (合成数据).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring import inputs
from scoring.errors import RulesError
from scoring.history import (
    SYNTHETIC_NOTICE,
    SyntheticHistory,
    serious_outcomes,
    synthetic_history,
)
from scoring.input_files import read_inputs
from scoring.rules import Mode, RuleSet
from scoring.shipped import load_rules
from scoring.uscc_columns import valid

TODAY = dt.date(2026, 11, 27)
YEARS = (2023, 2024, 2025, 2026)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules()


@pytest.fixture(scope="module")
def history(rules: RuleSet) -> SyntheticHistory:
    return synthetic_history(2_000, YEARS, seed=7, rules=rules, today=TODAY)


@pytest.fixture(scope="module")
def outcomes(history: SyntheticHistory, rules: RuleSet) -> pd.DataFrame:
    return serious_outcomes(history.institutions, history.findings, rules)


# ---------------------------------------------------------------------------- the generator


def test_same_seed_same_history(rules: RuleSet) -> None:
    a = synthetic_history(300, seed=3, rules=rules, today=TODAY)
    b = synthetic_history(300, seed=3, rules=rules, today=TODAY)
    pd.testing.assert_frame_equal(a.institutions, b.institutions)
    pd.testing.assert_frame_equal(a.findings, b.findings)
    pd.testing.assert_series_equal(a.risk, b.risk)
    pd.testing.assert_frame_equal(a.risk_by_year, b.risk_by_year)


def test_another_seed_another_history(rules: RuleSet) -> None:
    a = synthetic_history(300, seed=3, rules=rules, today=TODAY)
    b = synthetic_history(300, seed=4, rules=rules, today=TODAY)
    assert not a.institutions["uscc"].equals(b.institutions["uscc"])
    assert not a.findings["indicator"].equals(b.findings["indicator"])
    assert not np.allclose(a.risk.to_numpy(), b.risk.to_numpy())


def test_the_history_passes_input_validation(history: SyntheticHistory, rules: RuleSet) -> None:
    institutions, findings = inputs.validate(
        history.institutions,
        history.findings,
        rules=rules,
        institutions_file="institutions",
        findings_file="findings",
    )
    pd.testing.assert_frame_equal(institutions, history.institutions, check_dtype=False)
    pd.testing.assert_frame_equal(findings, history.findings, check_dtype=False)
    assert valid(history.institutions["uscc"]).all()
    assert history.institutions["uscc"].is_unique
    assert history.findings["finding_id"].is_unique
    assert list(history.risk.index) == list(history.institutions["uscc"])
    assert [int(year) for year in history.risk_by_year.columns] == list(YEARS)


def test_the_history_round_trips_through_csv_files(tmp_path: Path, rules: RuleSet) -> None:
    small = synthetic_history(200, seed=5, rules=rules, today=TODAY)
    institutions_csv, findings_csv = tmp_path / "institutions.csv", tmp_path / "findings.csv"
    small.institutions.to_csv(institutions_csv, index=False)
    findings = small.findings.assign(occurred_on=small.findings["occurred_on"].dt.date)
    findings.to_csv(findings_csv, index=False)
    read_institutions, read_findings = read_inputs(institutions_csv, findings_csv, rules=rules)
    pd.testing.assert_frame_equal(read_institutions, small.institutions, check_dtype=False)
    pd.testing.assert_frame_equal(read_findings, small.findings, check_dtype=False)


def test_the_history_round_trips_through_parquet_files(tmp_path: Path, rules: RuleSet) -> None:
    small = synthetic_history(200, seed=6, rules=rules, today=TODAY)
    institutions_file, findings_file = tmp_path / "i.parquet", tmp_path / "f.parquet"
    small.institutions.to_parquet(institutions_file, index=False)
    small.findings.to_parquet(findings_file, index=False)
    read_institutions, read_findings = read_inputs(institutions_file, findings_file, rules=rules)
    pd.testing.assert_frame_equal(read_institutions, small.institutions, check_dtype=False)
    pd.testing.assert_frame_equal(read_findings, small.findings, check_dtype=False)


def test_no_date_after_today_and_a_year_not_over_stops_at_today(rules: RuleSet) -> None:
    today = dt.date(2025, 3, 10)
    made = synthetic_history(3_000, (2023, 2024, 2025), seed=2, rules=rules, today=today)
    dates = made.findings["occurred_on"]
    assert dates.max() <= pd.Timestamp(today)
    per_year = dates.dt.year.value_counts()
    assert set(per_year.index) == {2023, 2024, 2025}
    # About 69 of 365 days: far fewer findings than in a whole year, but some.
    assert 0.05 * per_year[2024] < per_year[2025] < 0.4 * per_year[2024]


def test_years_that_have_not_started_or_predate_the_measure_are_refused(
    rules: RuleSet,
) -> None:
    with pytest.raises(ValueError, match="has not started"):
        synthetic_history(50, (2025, 2026), seed=0, rules=rules, today=dt.date(2025, 12, 31))
    with pytest.raises(RulesError):
        synthetic_history(50, (2021, 2022), seed=0, rules=rules, today=TODAY)


def test_the_first_year_of_the_measure_starts_when_it_came_into_force(rules: RuleSet) -> None:
    made = synthetic_history(5_000, (2022, 2023), seed=1, rules=rules, today=TODAY)
    dates = made.findings["occurred_on"]
    assert dates.min() >= pd.Timestamp(rules.info.issued_on)
    assert (dates.dt.year == 2022).any()


def test_riskier_institutions_have_more_and_heavier_findings(
    history: SyntheticHistory, rules: RuleSet
) -> None:
    findings = history.findings
    risk = history.risk.reindex(findings["uscc"]).to_numpy()
    high = risk > np.quantile(history.risk, 0.75)
    per_institution = findings["uscc"].value_counts().reindex(history.risk.index, fill_value=0)
    top = history.risk >= history.risk.quantile(0.75)
    bottom = history.risk <= history.risk.quantile(0.25)
    assert per_institution[top].mean() > 5 * per_institution[bottom].mean()
    per_unit = [i.code for i in rules.indicators if i.mode is Mode.PER]
    counts = findings["count"][findings["indicator"].isin(per_unit).to_numpy()]
    high_per = high[findings["indicator"].isin(per_unit).to_numpy()]
    assert counts[high_per].mean() > counts[~high_per].mean()


def test_findings_persist_year_to_year(history: SyntheticHistory) -> None:
    findings = history.findings
    table = pd.crosstab(findings["uscc"], findings["occurred_on"].dt.year)
    table = table.reindex(history.risk.index, fill_value=0)
    assert np.corrcoef(table[2023], table[2024])[0, 1] > 0.3


def test_summary_prints_the_synthetic_notice(history: SyntheticHistory) -> None:
    assert history.summary().startswith(SYNTHETIC_NOTICE)
    assert "合成数据" in SYNTHETIC_NOTICE and "synthetic" in SYNTHETIC_NOTICE
    for documented in (synthetic_history, SyntheticHistory, SyntheticHistory.summary):
        assert "synthetic" in (documented.__doc__ or "")


# ---------------------------------------------------------------------------- outcomes


def _raw_institutions(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "uscc": [code for code, _ in rows],
            "name": [f"机构{i}" for i in range(len(rows))],
            "district_code": "120111",
            "licence_no": [f"教民1120111700000{i}号" for i in range(len(rows))],
            "status": [status for _, status in rows],
        }
    )


CODES = [
    "52120111MJ0627485A",
    "52120111MJ0631902H",
    "52120111MJ06185738",
    "52120111MJ0640226Q",
    "52120111MJ0633917G",
    "52120111MJ0529640X",
]
PENALISED, VETOED, LOWEST, CLEAN, CLOSED, EARLIER = CODES


@pytest.fixture(scope="module")
def hand_made(rules: RuleSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    statuses = ["operating", "suspended", "operating", "operating", "closed", "operating"]
    findings = pd.DataFrame(
        [
            # A penalty in 2024: a serious outcome for 2023 (and points lost in 2024).
            (PENALISED, "fees_displayed", "2023-05-01", "1", "active"),
            (PENALISED, "no_penalties", "2024-07-01", "1", "active"),
            # A veto in 2024, whatever the score.
            (VETOED, "veto_major_accident", "2024-03-03", "1", "active"),
            # 110 points lost in 2024: 890, the lowest four-class grade (D).
            (LOWEST, "refunds_per_contract", "2024-09-09", "10", "active"),
            (LOWEST, "advertising_lawful", "2024-09-10", "1", "active"),
            # Findings in 2024 but no serious outcome: 90 points lost, a revoked penalty, a
            # revoked veto, and a penalty dated in 2025.
            (CLEAN, "refunds_per_contract", "2024-02-02", "9", "active"),
            (CLEAN, "no_penalties", "2024-04-04", "1", "revoked"),
            (CLEAN, "veto_education_policy", "2024-04-05", "1", "revoked"),
            (CLEAN, "no_penalties", "2025-01-01", "1", "active"),
            # Closed: a penalty in 2024, and still left out.
            (CLOSED, "no_penalties", "2024-06-06", "1", "active"),
            # Serious things in 2023 only: they cost 2023's score, not the 2023 outcome.
            (EARLIER, "no_penalties", "2023-06-06", "1", "active"),
            (EARLIER, "refunds_per_contract", "2023-06-07", "12", "active"),
            (EARLIER, "veto_public_incident", "2023-06-08", "1", "active"),
        ],
        columns=["uscc", "indicator", "occurred_on", "count", "status"],
    )
    return inputs.validate(
        _raw_institutions(list(zip(CODES, statuses, strict=True))),
        findings,
        rules=rules,
        institutions_file="institutions",
        findings_file="findings",
    )


def test_outcomes_follow_the_definition_on_a_hand_made_case(
    hand_made: tuple[pd.DataFrame, pd.DataFrame], rules: RuleSet
) -> None:
    institutions, findings = hand_made
    result = serious_outcomes(institutions, findings, rules, [2023, 2024])
    codes = [i.code for i in rules.in_force(2023).indicators]
    assert list(result.columns) == ["uscc", "year", "score", "grade", *codes, "outcome"]
    assert result["year"].eq(2023).all()
    outcome = dict(zip(result["uscc"], result["outcome"], strict=True))
    assert outcome == {PENALISED: 1, VETOED: 1, LOWEST: 1, CLEAN: 0, EARLIER: 0}

    row = result.set_index("uscc")
    assert row.loc[PENALISED, "fees_displayed"] == 20
    assert row.loc[PENALISED, "score"] == 980
    assert row.loc[PENALISED, "grade"] == "A"
    assert row.loc[EARLIER, "no_penalties"] == 30
    assert row.loc[EARLIER, "refunds_per_contract"] == 100  # capped at the indicator's points
    assert row.loc[EARLIER, "score"] == 870
    assert row.loc[EARLIER, "grade"] == "D"
    assert row.loc[CLEAN, codes].eq(0).all()
    assert row[codes].sum(axis=1).add(row["score"]).eq(1000).all()


def test_every_pair_of_years_gets_its_rows(
    hand_made: tuple[pd.DataFrame, pd.DataFrame], rules: RuleSet
) -> None:
    institutions, findings = hand_made
    result = serious_outcomes(institutions, findings, rules)  # 2023–2025, from the dates
    assert list(result["year"].unique()) == [2023, 2024]
    assert len(result) == 2 * 5
    in_2024 = result[result["year"] == 2024].set_index("uscc")["outcome"]
    assert in_2024.to_dict() == {PENALISED: 0, VETOED: 0, LOWEST: 0, CLEAN: 1, EARLIER: 0}
    assert serious_outcomes(institutions, findings, rules, [2023, 2025]).empty
    assert serious_outcomes(institutions, findings, rules, [2024]).empty


def test_the_five_grade_scale_rates_t_but_the_outcome_stays_four_class(
    hand_made: tuple[pd.DataFrame, pd.DataFrame], rules: RuleSet
) -> None:
    institutions, findings = hand_made
    result = serious_outcomes(institutions, findings, rules, [2023, 2024], scale="five")
    row = result.set_index("uscc")
    assert row.loc[EARLIER, "grade"] == "E"  # vetoed in 2023: the five-grade scale's lowest
    assert row.loc[LOWEST, "outcome"] == 1  # 890 in 2024: D, the four-class lowest


def _plain_outcomes(
    institutions: pd.DataFrame, findings: pd.DataFrame, rules: RuleSet, years: list[int]
) -> pd.DataFrame:
    """The definition again, in plain pandas, sharing no code with the engine."""
    open_ = institutions[institutions["status"] != "closed"]
    active = findings[(findings["status"] == "active") & findings["uscc"].isin(open_["uscc"])]
    active = active.assign(year=active["occurred_on"].dt.year)
    units = active.groupby(["year", "uscc", "indicator"])["count"].sum().reset_index()
    four = rules.scale("four").bands
    bands = four[max(four)]
    lowest = bands[-1].grade
    rated = {}
    for year in years:
        force = rules.in_force(year)
        table = pd.DataFrame(
            {
                "indicator": [i.code for i in force.indicators],
                "points": [i.points for i in force.indicators],
                "per": [i.deduction or i.points for i in force.indicators],
            }
        )
        this = units[units["year"] == year].merge(table, on="indicator", how="left")
        scored = this.dropna(subset=["points"])
        lost = np.minimum(scored["count"] * scored["per"], scored["points"])
        wide = (
            scored.assign(lost=lost.astype(int))
            .pivot_table(index="uscc", columns="indicator", values="lost", aggfunc="sum")
            .reindex(index=open_["uscc"], columns=table["indicator"])
            .fillna(0)
            .astype(int)
        )
        wide["score"] = int(table["points"].sum()) - wide.sum(axis=1)
        vetoed = set(this.loc[this["points"].isna(), "uscc"])
        wide["vetoed"] = wide.index.isin(list(vetoed))
        wide["grade"] = [
            lowest if v else next(b.grade for b in bands if b.min <= s <= b.max)
            for s, v in zip(wide["score"], wide["vetoed"], strict=True)
        ]
        penalised = set(this.loc[this["indicator"] == "no_penalties", "uscc"])
        wide["penalised"] = wide.index.isin(list(penalised))
        rated[year] = wide
    rows = []
    for year in years[:-1]:
        now, later = rated[year], rated[year + 1]
        serious = later["penalised"] | later["vetoed"] | (later["grade"] == lowest)
        rows.append(now.assign(year=year, outcome=serious.astype(int)).reset_index())
    return pd.concat(rows, ignore_index=True)


def test_outcomes_on_a_generated_history_match_plain_pandas(
    history: SyntheticHistory, outcomes: pd.DataFrame, rules: RuleSet
) -> None:
    expected = _plain_outcomes(history.institutions, history.findings, rules, list(YEARS))
    assert len(outcomes) == len(expected)
    assert outcomes["uscc"].tolist() == expected["uscc"].tolist()
    assert outcomes["year"].tolist() == expected["year"].tolist()
    codes = [i.code for i in rules.in_force(2023).indicators]
    for column in ["score", "grade", *codes, "outcome"]:
        assert outcomes[column].tolist() == expected[column].tolist(), column


def test_riskier_institutions_have_more_serious_outcomes(
    history: SyntheticHistory, outcomes: pd.DataFrame
) -> None:
    risk = history.risk.reindex(outcomes["uscc"]).to_numpy()
    quartile = pd.qcut(risk, 4, labels=False)
    rate_by_quartile = outcomes["outcome"].groupby(quartile).mean()
    assert rate_by_quartile[3] > rate_by_quartile[0] + 0.1
    assert rate_by_quartile[3] > 4 * rate_by_quartile[0]
    assert rate_by_quartile.is_monotonic_increasing


def test_both_classes_are_present(outcomes: pd.DataFrame) -> None:
    assert set(outcomes["outcome"]) == {0, 1}
    assert 0.02 < outcomes["outcome"].mean() < 0.3
    assert outcomes["grade"].eq("D").any()


def test_closed_institutions_are_left_out(
    history: SyntheticHistory, outcomes: pd.DataFrame
) -> None:
    closed = history.institutions.loc[history.institutions["status"] == "closed", "uscc"]
    assert len(closed) > 0
    assert not outcomes["uscc"].isin(closed).any()
    open_count = len(history.institutions) - len(closed)
    assert len(outcomes) == open_count * (len(YEARS) - 1)
    assert outcomes.groupby("year").size().eq(open_count).all()


def test_every_way_to_a_serious_outcome_occurs_in_a_generated_history(
    history: SyntheticHistory,
) -> None:
    findings = history.findings
    active = findings[findings["status"] == "active"]
    assert (active["indicator"] == "no_penalties").sum() > 20
    large = synthetic_history(50_000, (2024, 2025), seed=9, today=TODAY)
    assert large.findings["indicator"].str.startswith("veto_").any()
