"""What lifts an institution to the next grade (scoring.lift), checked against the engine:
every set it proposes, revoked and re-rated, reaches the next grade with the score it states,
and no smaller set does (brute force over every subset of a few findings)."""

from __future__ import annotations

import itertools
import json
from datetime import date

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scoring.engine import rate
from scoring.explain import explain
from scoring.input_files import read_inputs
from scoring.lift import lift
from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS, load_rules
from service.cli import app
from tests.strategies import findings_frame, institutions_frame, make_uscc

RULES = load_rules()
YEAR = 2024
FORCE = RULES.in_force(YEAR)
ORDER = [b.grade for b in FORCE.bands]
ONE = make_uscc("MJ0600001")
# All-or-nothing, per unit (small and large deductions) and a veto: every way points come back.
CODES = ["licence_valid", "venue_as_licensed", "fees_displayed", "refunds_per_contract",
         "advertising_lawful", "veto_major_accident"]  # fmt: skip


def revoked(findings: pd.DataFrame, ids: set[str]) -> pd.DataFrame:
    return findings.assign(
        status=[("revoked" if f in ids else s) for f, s in zip(findings["finding_id"],
                                                              findings["status"], strict=True)]
    )  # fmt: skip


def grade_after(findings: pd.DataFrame, ids: set[str]) -> tuple[int, str]:
    row = rate(institutions_frame([ONE]), revoked(findings, ids), FORCE).iloc[0]
    return int(row["score"]), str(row["grade"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(CODES), st.integers(1, 4), st.booleans()),
        min_size=1,
        max_size=6,
    )
)
def test_each_proposed_set_lifts_and_none_smaller_does(rows: list[tuple[str, int, bool]]) -> None:
    findings = findings_frame(
        [
            {"finding_id": f"F{k}", "uscc": ONE, "indicator": code, "count": count,
             "occurred_on": date(YEAR, 5, 1), "status": "active" if active else "revoked"}
            for k, (code, count, active) in enumerate(rows)
        ]
    )  # fmt: skip
    e = explain(institutions_frame([ONE]), findings, FORCE, YEAR, ONE)
    result = lift(e, FORCE.bands)
    here = ORDER.index(e.grade)
    if here == 0:
        assert result.next_grade is None and result.revocations == []
        return
    target = ORDER[here - 1]
    assert result.next_grade == target
    assert result.vetoed == e.vetoed
    if e.vetoed:
        assert result.points_missing is None and "一票否决" in result.summary
    else:
        assert result.points_missing == FORCE.bands[here - 1].min - e.score > 0
    assert result.exhaustive
    active = [f for f, s in zip(findings["finding_id"], findings["status"], strict=True)
              if s == "active"]  # fmt: skip
    reaching = [
        set(chosen)
        for size in range(len(active) + 1)
        for chosen in itertools.combinations(active, size)
        if ORDER.index(grade_after(findings, set(chosen))[1]) <= here - 1
    ]
    smallest = min(map(len, reaching))
    assert result.revocations, "revoking everything always reaches the top grade"
    for proposal in result.revocations:
        score, grade = grade_after(findings, set(proposal.finding_ids))
        assert (score, grade) == (proposal.score, proposal.grade)
        assert len(proposal.finding_ids) == smallest
    assert result.revocations_total == sum(len(s) == smallest for s in reaching)


def test_the_sample_district_every_year() -> None:
    institutions, findings = read_inputs(SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS, rules=RULES)
    lifted = 0
    for year in (2022, 2023, 2024):
        force = RULES.in_force(year)
        for uscc in institutions["uscc"]:
            e = explain(institutions, findings, force, year, uscc)
            result = lift(e, force.bands)
            if result.next_grade is None:
                assert e.grade == force.bands[0].grade
                continue
            assert result.summary.startswith(("距", "一票否决"))
            for proposal in result.revocations:
                again = rate(institutions, revoked(findings, set(proposal.finding_ids)), force)
                row = again[again["uscc"] == uscc].iloc[0]
                assert (int(row["score"]), str(row["grade"])) == (proposal.score, proposal.grade)
                lifted += 1
    assert lifted > 0


def test_the_command_line_ends_each_explanation_with_it() -> None:
    uscc = "52120111MJ0642473E"  # C in 2023, 20 points short of B
    institutions, findings = read_inputs(SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS, rules=RULES)
    force = RULES.in_force(2023)
    expected = lift(explain(institutions, findings, force, 2023, uscc), force.bands)
    as_json = CliRunner().invoke(app, ["explain", uscc, "--year", "2023", "--format", "json"])
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout)["lift"] == expected.model_dump(mode="json")
    table = CliRunner().invoke(app, ["explain", uscc, "--year", "2023"])
    tail = table.stdout[table.stdout.index("升级所需") :]
    assert f"还差 {expected.points_missing} 分" in tail
    assert all(r.finding_ids[0] in tail for r in expected.revocations)


def test_too_many_combinations_still_give_the_fewest_findings() -> None:
    """25 findings, none over its indicator's cap: each revoked gives back exactly 10 points.
    C(25, 15) sets are too many to count, but the number listed is still the least (the
    knapsack's), and the set lifts the grade."""
    spread = {"refunds_per_contract": 10, "fees_per_policy": 5, "model_contract_used": 4,
              "advertising_lawful": 3, "prepaid_fees_lawful": 3}  # fmt: skip
    rows = [
        {"finding_id": f"{code}-{n}", "uscc": ONE, "indicator": code,
         "occurred_on": date(YEAR, 3, 1), "count": 1}
        for code, many in spread.items() for n in range(many)
    ]  # fmt: skip
    findings = findings_frame(rows)
    e = explain(institutions_frame([ONE]), findings, FORCE, YEAR, ONE)
    assert e.score == 750 and e.grade == "D"
    result = lift(e, FORCE.bands)
    c_min = FORCE.bands[ORDER.index("C")].min
    assert result.exhaustive is False and result.revocations_total == 0
    [proposal] = result.revocations
    assert len(proposal.finding_ids) == -(-(c_min - 750) // 10)  # 10 points a finding: no fewer
    assert "这是最少条数" in result.summary
    score, grade = grade_after(findings, set(proposal.finding_ids))
    assert (score, grade) == (proposal.score, proposal.grade) and grade == "C"
