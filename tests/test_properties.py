"""Properties of the engine on random districts, checked against the plain oracle."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.engine import rate
from scoring.explain import explain_all
from tests import oracle
from tests.strategies import (
    INDICATOR_CODES,
    RULES,
    District,
    capping_rows,
    districts,
    finding_rows,
    findings_frame,
    institutions_frame,
    make_uscc,
    scales,
    usccs,
    years,
    years_dates,
)

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def grade_rank(grade: str, year: int, scale: str | None) -> int:
    """0 for the best grade of the scale, growing towards the worst."""
    bands = sorted(oracle.bands_in_force(RULES, year, scale), key=lambda b: -b.min)
    return [b.grade for b in bands].index(grade)


def assert_matches_oracle(result: pd.DataFrame, expected: list[oracle.Rating]) -> None:
    assert len(result) == len(expected)
    assert set(INDICATOR_CODES) <= set(result.columns)
    for row, want in zip(result.to_dict("records"), expected, strict=True):
        where = f"institution {want.uscc}"
        assert row["uscc"] == want.uscc, where
        assert int(row["score"]) == want.score, where
        assert row["grade"] == want.grade, where
        assert tuple(row["vetoes"]) == want.vetoes, where
        assert bool(row["vetoed"]) == bool(want.vetoes), where
        got_points = {code: int(row[code]) for code in want.points}
        assert got_points == want.points, where


def concat(*frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)


@PROPERTY
@given(district=districts(), year=years, scale=scales)
def test_engine_equals_oracle(district: District, year: int, scale: str | None) -> None:
    result = rate(district.institutions, district.findings, RULES, year, scale=scale)
    expected = oracle.rate_all(district.institutions, district.findings, RULES, year, scale)
    assert_matches_oracle(result, expected)


@PROPERTY
@given(district=districts(max_findings=12), year=years, scale=scales, data=st.data())
def test_engine_equals_oracle_when_every_finding_counts(
    district: District, year: int, scale: str | None, data: st.DataObject
) -> None:
    """Dense version: all findings are active and in the rating year, so caps and vetoes bite."""
    rows = data.draw(
        st.lists(
            finding_rows(district.codes, occurred_on=years_dates(year), status=st.just("active")),
            min_size=1,
            max_size=40,
        )
    )
    findings = findings_frame(rows)
    result = rate(district.institutions, findings, RULES, year, scale=scale)
    assert_matches_oracle(
        result, oracle.rate_all(district.institutions, findings, RULES, year, scale)
    )


@PROPERTY
@given(district=districts(), year=years, scale=scales, data=st.data())
def test_adding_a_finding_never_raises_a_score_or_a_grade(
    district: District, year: int, scale: str | None, data: st.DataObject
) -> None:
    extra = data.draw(
        finding_rows(district.codes, occurred_on=st.one_of(years_dates(year), years_dates()))
    )
    before = rate(district.institutions, district.findings, RULES, year, scale=scale)
    after = rate(
        district.institutions,
        concat(district.findings, findings_frame([extra])),
        RULES,
        year,
        scale=scale,
    )
    for b, a in zip(before.to_dict("records"), after.to_dict("records"), strict=True):
        assert a["score"] <= b["score"]
        assert grade_rank(a["grade"], year, scale) >= grade_rank(b["grade"], year, scale)
        for code in INDICATOR_CODES:
            assert a[code] <= b[code]
        if a["uscc"] != extra["uscc"]:  # a finding touches only its own institution
            assert a == b


def other_year_dates(year: int) -> st.SearchStrategy[date]:
    return st.one_of(
        st.sampled_from((date(year - 1, 12, 31), date(year + 1, 1, 1))),
        st.dates(date(2000, 1, 1), date(year - 1, 12, 31)),
        st.dates(date(year + 1, 1, 1), date(2030, 12, 31)),
    )


@PROPERTY
@given(district=districts(), year=years, scale=scales, data=st.data())
def test_revoked_findings_and_other_years_findings_change_nothing(
    district: District, year: int, scale: str | None, data: st.DataObject
) -> None:
    codes = district.codes
    noise = data.draw(
        st.lists(
            st.one_of(
                finding_rows(codes, occurred_on=years_dates(year), status=st.just("revoked")),
                finding_rows(codes, occurred_on=other_year_dates(year)),
            ),
            min_size=1,
            max_size=15,
        )
    )
    before = rate(district.institutions, district.findings, RULES, year, scale=scale)
    with_noise = concat(district.findings, findings_frame(noise))
    after = rate(district.institutions, with_noise, RULES, year, scale=scale)
    pd.testing.assert_frame_equal(after, before)


@PROPERTY
@given(district=districts(max_institutions=5), year=years, scale=scales)
def test_rating_one_institution_alone_equals_rating_it_in_the_batch(
    district: District, year: int, scale: str | None
) -> None:
    batch = rate(district.institutions, district.findings, RULES, year, scale=scale)
    for i, code in enumerate(district.codes):
        alone_institutions = district.institutions.iloc[[i]].reset_index(drop=True)
        own = district.findings[district.findings["uscc"] == code].reset_index(drop=True)
        alone = rate(alone_institutions, own, RULES, year, scale=scale)
        pd.testing.assert_frame_equal(alone, batch.iloc[[i]].reset_index(drop=True))


@PROPERTY
@given(district=districts(), year=years, scale=scales, data=st.data())
def test_results_do_not_depend_on_row_order(
    district: District, year: int, scale: str | None, data: st.DataObject
) -> None:
    n, m = len(district.institutions), len(district.findings)
    institution_order = data.draw(st.permutations(range(n)))
    finding_order = data.draw(st.permutations(range(m)))
    # The shuffled frames keep their (now unordered) index, as a filtered or sorted frame would.
    shuffled = rate(
        district.institutions.iloc[institution_order],
        district.findings.iloc[finding_order],
        RULES,
        year,
        scale=scale,
    )
    original = rate(district.institutions, district.findings, RULES, year, scale=scale)
    assert list(shuffled["uscc"]) == [district.codes[i] for i in institution_order]
    pd.testing.assert_frame_equal(
        shuffled.set_index("uscc").sort_index(), original.set_index("uscc").sort_index()
    )


@PROPERTY
@given(codes=st.lists(usccs, min_size=1, max_size=20, unique=True), year=years, scale=scales)
def test_no_findings_gives_everyone_1000_and_a(
    codes: list[str], year: int, scale: str | None
) -> None:
    result = rate(institutions_frame(codes), findings_frame([]), RULES, year, scale=scale)
    assert list(result["uscc"]) == codes
    assert (result["score"] == 1000).all()
    assert (result["grade"] == "A").all()
    assert not result["vetoed"].any()
    assert all(tuple(v) == () for v in result["vetoes"])
    full = {i.code: oracle.value_in_force(i.points, date(year, 12, 31)) for i in RULES.indicators}
    for code, points in full.items():
        assert (result[code] == points).all(), code


MAX_COUNT = 1_000_000  # the largest count scoring.inputs accepts (its MAX_COUNT)


@pytest.mark.parametrize(
    "counts",
    [[MAX_COUNT], [MAX_COUNT] * 500, [1, MAX_COUNT - 1]],
    ids=["the-largest-count", "500-largest-counts", "1-plus-largest-minus-1"],
)
@pytest.mark.parametrize("code", ["fees_displayed", "refunds_per_contract", "licence_valid"])
def test_the_largest_counts_take_every_point_and_no_more(code: str, counts: list[int]) -> None:
    """扣完为止 holds at the top of the accepted range too: the indicator keeps 0, never less."""
    uscc = make_uscc("000000001")
    rows = [
        {"uscc": uscc, "indicator": code, "occurred_on": date(2023, 6, 1), "count": c}
        for c in counts
    ]
    institutions, findings = institutions_frame([uscc]), findings_frame(rows)
    result = rate(institutions, findings, RULES, 2023)
    full = {"fees_displayed": 40, "refunds_per_contract": 100, "licence_valid": 30}[code]
    assert int(result.loc[0, code]) == 0
    assert int(result.loc[0, "score"]) == 1000 - full
    assert oracle.rate_all(institutions, findings, RULES, 2023)[0].score == 1000 - full


@PROPERTY
@given(district=districts(max_institutions=4, max_findings=0), year=years, data=st.data())
def test_each_indicator_explains_points_lost_as_points_minus_points_kept(
    district: District, year: int, data: st.DataObject
) -> None:
    """An explanation never reports more lost than the indicator's points (扣完为止).

    Every example holds findings that alone take all of a per-unit indicator's points (a
    count of 20 on refunds_per_contract loses 100, not 200), mixed with ordinary ones; what
    each indicator explains must match the oracle's points and points kept.
    """
    codes = district.codes
    rows = data.draw(
        st.lists(
            st.one_of(
                capping_rows(codes, year),
                finding_rows(codes, occurred_on=years_dates(year)),
            ),
            min_size=1,
            max_size=25,
        )
    )
    rows.append(data.draw(capping_rows(codes, year)))
    findings = findings_frame(rows)
    explanations = explain_all(district.institutions, findings, RULES, year)
    expected = oracle.rate_all(district.institutions, findings, RULES, year)
    last_day = date(year, 12, 31)
    full = {i.code: oracle.value_in_force(i.points, last_day) for i in RULES.indicators}
    capped = 0
    for explanation, want in zip(explanations, expected, strict=True):
        assert explanation.uscc == want.uscc
        assert {i.code for i in explanation.indicators} == set(want.points)
        for item in explanation.indicators:
            where = f"{want.uscc} {item.code}"
            assert item.points == full[item.code], where
            assert item.kept == want.points[item.code], where
            assert item.lost == item.points - item.kept, where
            assert 0 <= item.lost <= item.points, where
            capped += item.mode == "per" and item.kept == 0
    assert capped >= 1  # the appended finding took every point of one indicator


def test_twenty_person_times_of_refunds_lose_its_100_points_not_200() -> None:
    """The reported case: 20 × 10 per person-time is capped at the indicator's 100 points."""
    uscc = make_uscc("000000020")
    row = {"uscc": uscc, "indicator": "refunds_per_contract", "occurred_on": date(2023, 6, 1)}
    findings = findings_frame([{**row, "count": 20}])
    [explanation] = explain_all(institutions_frame([uscc]), findings, RULES, 2023)
    [refunds] = [i for i in explanation.indicators if i.code == "refunds_per_contract"]
    assert (refunds.points, refunds.kept, refunds.lost) == (100, 0, 100)
    assert explanation.score == 900
