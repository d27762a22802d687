"""Hypothesis strategies for random districts, in the engine's normalised frame shape.

Institutions: `uscc` (unique, valid GB 32100-2015 codes `52120111` + 9 characters + check),
`name`, `district_code`, `licence_no`, `address`, `status`.
Findings: `finding_id`, `uscc`, `indicator` (any indicator or veto code), `occurred_on`
(datetime64), `count` (int64 >= 1), `source`, `reference`, `status` (active | revoked), `note`.

The frame builders are also used to rate the hand-written cases of tests/cases/.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
from hypothesis import strategies as st
from stdnum.cn import uscc as stdnum_uscc

from scoring import inputs
from scoring.rules import Mode
from scoring.shipped import load_rules
from scoring.uscc import ALPHABET
from tests.oracle import value_in_force

RULES = load_rules()
INDICATOR_CODES = [i.code for i in RULES.indicators]
VETO_CODES = [v.code for v in RULES.vetoes]
ALL_CODES = INDICATOR_CODES + VETO_CODES
PER_UNIT_CODES = [i.code for i in RULES.indicators if i.mode is Mode.PER]
YEARS = (2022, 2023, 2024, 2025)
SOURCES = ("inspection", "complaint", "penalty", "self_report", "platform", "other")

INSTITUTION_COLUMNS = list(inputs.INSTITUTION_COLUMNS.order)
FINDING_COLUMNS = list(inputs.FINDING_COLUMNS.order)


def make_uscc(nine: str) -> str:
    """A valid Xiqing code from 9 characters of the alphabet.

    The check character is python-stdnum's (`stdnum.cn.uscc`), not the project's own.
    """
    first17 = "52120111" + nine
    return first17 + stdnum_uscc.calc_check_digit(first17)


def institutions_frame(codes: Sequence[str]) -> pd.DataFrame:
    n = len(codes)
    return pd.DataFrame(
        {
            "uscc": pd.Series(list(codes), dtype="str"),
            "name": pd.Series([f"西青区第{i + 1}培训学校" for i in range(n)], dtype="str"),
            "district_code": pd.Series(["120111"] * n, dtype="str"),
            "licence_no": pd.Series([f"教民112011170{i:05d}" for i in range(n)], dtype="str"),
            "address": pd.Series([""] * n, dtype="str"),
            "status": pd.Series(["operating"] * n, dtype="str"),
        }
    )


def findings_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Findings from dicts with `uscc`, `indicator`, `occurred_on` and optional fields."""
    n = len(rows)
    return pd.DataFrame(
        {
            "finding_id": pd.Series(
                [str(r.get("finding_id", f"F{i:05d}")) for i, r in enumerate(rows)], dtype="str"
            ),
            "uscc": pd.Series([r["uscc"] for r in rows], dtype="str"),
            "indicator": pd.Series([r["indicator"] for r in rows], dtype="str"),
            "occurred_on": pd.Series(
                [pd.Timestamp(r["occurred_on"]) for r in rows], dtype="datetime64[ns]"
            ),
            "count": pd.Series([int(r.get("count", 1)) for r in rows], dtype="int64"),
            "source": pd.Series([r.get("source", "inspection") for r in rows], dtype="str"),
            "reference": pd.Series([r.get("reference", "") for r in rows], dtype="str"),
            "status": pd.Series([r.get("status", "active") for r in rows], dtype="str"),
            "note": pd.Series([r.get("note", "") for r in rows], dtype="str"),
        },
        index=pd.RangeIndex(n),
    )


@dataclass(frozen=True)
class District:
    institutions: pd.DataFrame
    findings: pd.DataFrame

    @property
    def codes(self) -> list[str]:
        return [str(c) for c in self.institutions["uscc"]]


usccs = st.text(alphabet=ALPHABET, min_size=9, max_size=9).map(make_uscc)

counts = st.one_of(
    st.integers(1, 3),  # the usual finding: one or a few occurrences
    st.integers(1, 12),  # enough to reach most caps
    st.integers(13, 1_000_000),  # far past every cap, up to scoring.inputs' MAX_COUNT
)

statuses = st.sampled_from(("active", "active", "active", "revoked"))


def years_dates(year: int | None = None) -> st.SearchStrategy[date]:
    """Days of `year` (of 2022–2025 when None), often its first or last day."""
    chosen = YEARS if year is None else (year,)
    edges = [day for y in chosen for day in (date(y, 1, 1), date(y, 12, 31))]
    return st.one_of(
        st.dates(date(chosen[0], 1, 1), date(chosen[-1], 12, 31)), st.sampled_from(edges)
    )


@st.composite
def finding_rows(
    draw: st.DrawFn,
    codes: Sequence[str],
    *,
    indicator: st.SearchStrategy[str] | None = None,
    occurred_on: st.SearchStrategy[date] | None = None,
    status: st.SearchStrategy[str] | None = None,
) -> dict[str, Any]:
    """One finding row against one of the institutions `codes`."""
    return {
        "uscc": draw(st.sampled_from(list(codes))),
        "indicator": draw(indicator if indicator is not None else st.sampled_from(ALL_CODES)),
        "occurred_on": draw(occurred_on if occurred_on is not None else years_dates()),
        "count": draw(counts),
        "source": draw(st.sampled_from(SOURCES)),
        "reference": draw(st.sampled_from(("", "西青教罚〔2023〕1号", "双随机抽查"))),
        "status": draw(status if status is not None else statuses),
        "note": "",
    }


@st.composite
def capping_rows(draw: st.DrawFn, codes: Sequence[str], year: int) -> dict[str, Any]:
    """An active finding of `year` that alone takes every point of a per-unit indicator.

    Its count is at least the indicator's points over its deduction in force on 31 December
    (refunds_per_contract: 100 points, 10 per person-time, so 10 or more), often far more.
    """
    code = draw(st.sampled_from(PER_UNIT_CODES))
    rule = next(i for i in RULES.indicators if i.code == code)
    last_day = date(year, 12, 31)
    points, deduction = (
        value_in_force(rule.points, last_day),
        value_in_force(rule.deduction, last_day),
    )
    assert points is not None and deduction is not None
    cap = -(-points // deduction)  # the fewest units that take every point
    count = draw(st.one_of(st.just(cap), st.integers(cap, 3 * cap), st.integers(cap, 1_000_000)))
    row = draw(
        finding_rows(
            codes,
            indicator=st.just(code),
            # counted: not before the measure came into force (3 December 2022)
            occurred_on=st.dates(max(date(year, 1, 1), RULES.info.issued_on), last_day),
            status=st.just("active"),
        )
    )
    return {**row, "count": count}


@st.composite
def districts(
    draw: st.DrawFn, *, max_institutions: int = 8, max_findings: int = 30, min_findings: int = 0
) -> District:
    """A district of 1..max_institutions institutions and their findings over 2022–2025."""
    codes = draw(st.lists(usccs, min_size=1, max_size=max_institutions, unique=True))
    rows = draw(st.lists(finding_rows(codes), min_size=min_findings, max_size=max_findings))
    for i, row in enumerate(rows):
        row["finding_id"] = f"F{i:05d}"
    return District(institutions_frame(codes), findings_frame(rows))


scales = st.sampled_from((None, "four", "five"))
years = st.sampled_from(YEARS)
