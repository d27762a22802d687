"""What lifts an institution to the next grade (scoring.lift), checked against the engine:
every set it proposes, revoked and re-rated, reaches the next grade with the score it states,
and no smaller set does (brute force over every subset of a few findings)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from datetime import date
from unittest import mock

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from scoring.engine import rate
from scoring.explain import explain
from scoring.input_files import read_inputs
from scoring.lift import MAX_SETS, _band_of, lift
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


def every_subset_rated(
    rows: list[dict[str, object]], ids: list[str]
) -> dict[frozenset[str], tuple[int, str]]:
    """The score and grade of the institution of `rows` with each subset of `ids` revoked, all
    rated by the engine at once (one institution per subset)."""
    subsets = [frozenset(c) for n in range(len(ids) + 1) for c in itertools.combinations(ids, n)]
    codes = [make_uscc(f"MJ{k:07d}") for k in range(len(subsets))]
    findings = findings_frame(
        [
            {
                **row,
                "uscc": uscc,
                "status": "revoked" if row["finding_id"] in chosen else row["status"],
            }
            for uscc, chosen in zip(codes, subsets, strict=True)
            for row in rows
        ]
    )
    rated = rate(institutions_frame(codes), findings, FORCE)
    return {
        chosen: (int(score), str(grade))
        for chosen, score, grade in zip(subsets, rated["score"], rated["grade"], strict=True)
    }


# Few indicators, so that several findings fall under one; counts often equal.
finding_lists = st.lists(
    st.tuples(
        st.sampled_from(CODES),
        st.one_of(st.sampled_from((1, 1, 2)), st.integers(1, 12)),
        st.sampled_from((True, True, True, False)),  # active, or revoked (not counted)
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(finding_lists)
def test_each_proposed_set_lifts_and_none_smaller_does(rows: list[tuple[str, int, bool]]) -> None:
    """Against the engine: every subset of the active findings (at most 8) revoked and re-rated;
    the sets proposed are among those of the least size that reach the next grade, with the
    engine's score and grade, and they are counted exactly."""
    records: list[dict[str, object]] = [
        {"finding_id": f"F{k}", "uscc": ONE, "indicator": code, "count": count,
         "occurred_on": date(YEAR, 5, 1), "status": "active" if active else "revoked"}
        for k, (code, count, active) in enumerate(rows)
    ]  # fmt: skip
    findings = findings_frame(records)
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
    active = [str(r["finding_id"]) for r in records if r["status"] == "active"]
    rated = every_subset_rated(records, active)
    reaching = {s for s, (_, grade) in rated.items() if ORDER.index(grade) <= here - 1}
    smallest = min(map(len, reaching))
    fewest = {s for s in reaching if len(s) == smallest}
    assert result.revocations, "revoking everything always reaches the top grade"
    proposed = [frozenset(p.finding_ids) for p in result.revocations]
    assert len(set(proposed)) == len(proposed) == min(len(fewest), MAX_SETS)
    for proposal, chosen in zip(result.revocations, proposed, strict=True):
        assert chosen in fewest
        assert rated[chosen] == (proposal.score, proposal.grade)
    assert result.revocations_total == len(fewest)
    assert f"共 {len(fewest)} 种最少组合" in result.summary


@dataclass(frozen=True)
class Cited:
    finding_id: str
    count: int


@dataclass(frozen=True)
class Indicator:
    code: str
    findings: list[Cited]
    mode: str
    points: int
    deduction: int | None
    kept: int


@dataclass(frozen=True)
class Veto:
    findings: list[Cited]


@dataclass(frozen=True)
class Light:
    """What `lift` reads of an explanation, without the model (`scoring.lift.Explained`)."""

    grade: str
    score: int
    vetoed: bool
    vetoes: list[Veto]
    indicators: list[Indicator]


def kept_with(indicator: Indicator, findings: list[Cited]) -> int:
    """The points `indicator` keeps with `findings` counted, as the measure counts them."""
    if not findings:
        return indicator.points
    if indicator.mode == "all":
        return 0
    units = sum(f.count for f in findings)
    return max(0, indicator.points - units * (indicator.deduction or 0))


def light(found: dict[str, list[Cited]], vetoes: list[Cited]) -> Light:
    """An explanation of the rules in force with `found` findings by indicator code."""
    indicators = []
    for i in FORCE.indicators:
        unkept = Indicator(i.code, found.get(i.code, []), i.rule.mode.value, i.points,
                           i.deduction, 0)  # fmt: skip
        indicators.append(dataclasses.replace(unkept, kept=kept_with(unkept, unkept.findings)))
    score = sum(i.kept for i in indicators)
    grade = FORCE.lowest_grade.grade if vetoes else FORCE.bands[_band_of(FORCE.bands, score)].grade
    return Light(grade, score, bool(vetoes), [Veto(vetoes)] if vetoes else [], indicators)


def recount(e: Light, revoked: set[str]) -> int:
    """The score with the findings of the `revoked` ids no longer counted."""
    return sum(
        kept_with(i, [f for f in i.findings if f.finding_id not in revoked]) for i in e.indicators
    )


def brute_force(e: Light) -> tuple[list[tuple[list[str], int, str]], int]:
    """The sets of the least size that lift `e` one grade, tried size by size in the order
    `itertools.combinations` gives them: (the first MAX_SETS as ids, score and grade; how many)."""
    here = ORDER.index(e.grade)
    forced = sorted({f.finding_id for v in e.vetoes for f in v.findings})
    ids = [f.finding_id for i in e.indicators for f in i.findings]
    for size in range(len(ids) + 1):
        found = []
        for chosen in itertools.combinations(ids, size):
            score = recount(e, set(chosen))
            grade = _band_of(FORCE.bands, score)
            if grade <= here - 1:
                found.append((forced + sorted(chosen), score, ORDER[grade]))
        if found:
            return found[:MAX_SETS], len(found)
    return [], 0


@st.composite
def light_explanations(draw: st.DrawFn, most: int = 14) -> Light:
    """Up to `most` findings under a few of the indicators in force, counts often equal and
    small (per-unit caps are 2 to 10 units), sometimes a veto."""
    codes = draw(st.lists(st.sampled_from([i.code for i in FORCE.indicators]), min_size=1,
                          max_size=5, unique=True))  # fmt: skip
    counts = draw(
        st.lists(st.one_of(st.sampled_from((1, 1, 2)), st.integers(1, 12)), min_size=1,
                 max_size=most)
    )  # fmt: skip
    found: dict[str, list[Cited]] = {}
    for k, count in enumerate(counts):
        code = draw(st.sampled_from(codes))
        found.setdefault(code, []).append(Cited(f"F{k:02d}", count))
    vetoes = [Cited(f"V{k}", 1) for k in range(draw(st.sampled_from((0, 0, 0, 1, 2))))]
    return light(found, vetoes)


@settings(max_examples=80, deadline=None)
@given(light_explanations())
def test_the_count_is_the_brute_force_count(e: Light) -> None:
    """Up to 14 findings, every combination of each size tried until some lift the grade: the
    total is their number, and the sets listed are the first MAX_SETS of them, in order."""
    result = lift(e, FORCE.bands)
    if ORDER.index(e.grade) == 0:
        assert result.next_grade is None
        return
    sets, total = brute_force(e)
    assert result.exhaustive
    assert [(r.finding_ids, r.score, r.grade) for r in result.revocations] == sets
    assert result.revocations_total == total


@settings(max_examples=40, deadline=None)
@given(light_explanations())
def test_the_search_finds_pairs_as_trying_them_does(e: Light) -> None:
    """The same, with no pairs tried first (as beyond MAX_PAIRS): the search lists and counts
    sets of two findings too."""
    with mock.patch("scoring.lift.MAX_PAIRS", -1):
        result = lift(e, FORCE.bands)
    if ORDER.index(e.grade) == 0:
        return
    sets, total = brute_force(e)
    assert [(r.finding_ids, r.score, r.grade) for r in result.revocations] == sets
    assert (result.revocations_total, result.exhaustive) == (total, True)


def test_a_finding_id_twice_is_revoked_everywhere() -> None:
    """The same id under two indicators (not in the district's data, but nothing forbids it):
    revoking it revokes both findings, as `_score_without` counts it."""
    e = light(
        {"fees_displayed": [Cited("F1", 1), Cited("F2", 1)],
         "refunds_per_contract": [Cited("F1", 5), Cited("F3", 5)]},
        [],
    )  # fmt: skip
    assert e.score == 860 and e.grade == "D"
    result = lift(e, FORCE.bands)
    sets, total = brute_force(e)
    assert [(r.finding_ids, r.score, r.grade) for r in result.revocations] == sets
    assert (result.revocations_total, result.exhaustive) == (total, True)
    # F1 gives back 20 points under one indicator and 50 under the other; each finding named
    # F1 is tried in turn, as the enumeration always did.
    assert sets == [(["F1"], 930, "C"), (["F1"], 930, "C"), (["F3"], 910, "C")]


def test_many_findings_are_counted_without_trying_every_set() -> None:
    """120 findings of one unit each across the per-unit indicators, none over its cap: every
    set of the least size gives back the same, so the total is a binomial coefficient, far
    too many to try (about 10^30); it is given at once, and the sets listed are the first."""
    found: dict[str, list[Cited]] = {}
    k = 0
    for i in FORCE.indicators:
        if i.rule.mode.value == "per" and i.deduction == 10:
            cap = i.points // 10
            found[i.code] = [Cited(f"F{k + n:03d}", 1) for n in range(cap)]
            k += cap
    e = light(found, [])
    ids = [f.finding_id for i in e.indicators for f in i.findings]
    need = FORCE.bands[ORDER.index(e.grade) - 1].min - e.score
    size = -(-need // 10)
    result = lift(e, FORCE.bands)
    assert result.exhaustive and result.revocations_total == math.comb(len(ids), size)
    expected = [sorted(c) for c in itertools.islice(itertools.combinations(ids, size), MAX_SETS)]
    assert [r.finding_ids for r in result.revocations] == expected


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


def test_too_many_combinations_to_try_are_counted_exactly() -> None:
    """25 findings, none over its indicator's cap: each revoked gives back exactly 10 points.
    Every set of the least number of findings (the points missing over 10) gives back the same,
    so there are C(25, that number) of them: far more than could be tried (C(25, 15) is over
    three million), counted exactly, and the first listed lift the grade."""
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
    size = -(-(c_min - 750) // 10)  # 10 points a finding: no fewer
    assert size == 15
    assert result.exhaustive is True and result.revocations_total == math.comb(25, 15)
    assert result.summary.endswith(
        f"撤销 15 条认定记录即可达到（共 {math.comb(25, 15)} 种最少组合）。"
    )
    assert len(result.revocations) == MAX_SETS
    for proposal in result.revocations:
        assert len(proposal.finding_ids) == size
        score, grade = grade_after(findings, set(proposal.finding_ids))
        assert (score, grade) == (proposal.score, proposal.grade) and grade == "C"
