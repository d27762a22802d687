"""What lifts an institution to the next grade up: the points it lacks, and the smallest sets
of the year's findings whose revocation would get it there.

A supervisor handling an objection must see at once whether upholding it could change the
grade, and an institution wants to know how far it is from the next grade. Both follow from an
explanation and the grade bands alone, so this is computed when an explanation is shown, never
stored with it (a stored explanation, and so a snapshot's content hash, stays as it was).

Revoking a finding gives back points only as the measure counts them: a per-unit indicator
gives back the units' deductions above its cap (points lost stay capped at the indicator's
points); an all-or-nothing indicator gives back its points only when every finding under it is
revoked; a veto lifts only when every veto finding is revoked, and until then no score can
lift the grade.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from scoring.explain import Explanation, FindingCited, IndicatorExplanation
from scoring.rules import Band

MAX_SETS = 10
"""Sets listed at most (all of the smallest size are counted)."""

MAX_TRIES = 2_000
"""Combinations tried at most before the search settles for a set it can prove suffices."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Revocation(_Model):
    """A set of findings whose revocation would reach `grade` with `score`."""

    finding_ids: list[str]
    score: int
    grade: str


class Lift(_Model):
    grade: str
    next_grade: str | None  # None at the top grade
    next_grade_min: int | None
    points_missing: int | None  # to the next grade's lowest score; None when vetoed or at top
    vetoed: bool
    summary: str  # one sentence, in Chinese, for the end of an explanation
    revocations: list[Revocation]  # the smallest sets, at most MAX_SETS
    revocations_total: int  # how many sets of that size there are (when exhaustive)
    exhaustive: bool  # False when the search stopped at MAX_TRIES (then the sets suffice)


def lift(explanation: Explanation, bands: Sequence[Band]) -> Lift:
    """What lifts `explanation`'s institution one grade up on `bands` (highest grade first)."""
    order = [b.grade for b in bands]
    here = order.index(explanation.grade)
    if here == 0:
        return Lift(
            grade=explanation.grade,
            next_grade=None,
            next_grade_min=None,
            points_missing=None,
            vetoed=False,
            summary=f"已是最高等级 {explanation.grade}。",
            revocations=[],
            revocations_total=0,
            exhaustive=True,
        )
    target = bands[here - 1]
    missing = None if explanation.vetoed else target.min - explanation.score
    sets, total, exhaustive = _smallest_sets(explanation, bands, here - 1)
    if explanation.vetoed:
        summary = (
            f"一票否决：任何得分都不能提升等级；只有撤销全部否决事项的认定记录，"
            f"才可能升至 {target.grade} 级（{target.min} 分及以上）。"
        )
    else:
        summary = f"距 {target.grade} 级（{target.min} 分及以上）还差 {missing} 分。"
    if sets and exhaustive:
        size = len(sets[0].finding_ids)
        summary += f"撤销 {size} 条认定记录即可达到（共 {total} 种最少组合）。"
    elif sets:
        size = len(sets[0].finding_ids)
        summary += f"撤销 {size} 条认定记录即可达到（这是最少条数；组合太多，只列出一种）。"
    else:
        summary += "撤销本年度任何认定记录都不能达到。"
    return Lift(
        grade=explanation.grade,
        next_grade=target.grade,
        next_grade_min=target.min,
        points_missing=missing,
        vetoed=explanation.vetoed,
        summary=summary,
        revocations=sets,
        revocations_total=total,
        exhaustive=exhaustive,
    )


def _smallest_sets(
    e: Explanation, bands: Sequence[Band], target: int
) -> tuple[list[Revocation], int, bool]:
    """The smallest sets of counted findings whose revocation reaches band `target` or above:
    (up to MAX_SETS of them, how many there are, whether the search was exhaustive)."""
    veto_ids = {f.finding_id for v in e.vetoes for f in v.findings}
    counted = [(i, f.finding_id, f.count) for i in e.indicators for f in i.findings]
    ids = [fid for _, fid, _ in counted]
    # Every veto finding must go; the search is over the others.
    forced = sorted(veto_ids)
    # A revocation changes only the indicators its findings are under: the score of a set is
    # the score kept, corrected there (what `_score_without` gives, without going over every
    # indicator for each of up to MAX_TRIES sets).
    under: dict[str, list[IndicatorExplanation]] = {}
    for indicator in e.indicators:
        for f in indicator.findings:
            under.setdefault(f.finding_id, []).append(indicator)
    kept = sum(i.kept for i in e.indicators)
    # With every finding once (ids unique, the usual case), a set's score is counted from the
    # findings' indicators and counts alone (`_score_of`).
    scorer = _Scorer(counted, kept) if len(set(ids)) == len(ids) else None
    fewest = _fewest(e.indicators, need=bands[target].min - e.score)
    if fewest is None:
        return [], 0, True
    size, one = fewest
    found: list[Revocation] = []
    total = 0
    for tries, chosen in enumerate(itertools.combinations(range(len(ids)), size), start=1):
        if tries > MAX_TRIES:  # too many to count: one set of the fewest findings will do
            score = _score_without(e.indicators, one)
            grade = bands[_band_of(bands, score)].grade
            return (
                [Revocation(finding_ids=forced + sorted(one), score=score, grade=grade)],
                0,
                False,
            )
        revoked = {ids[k] for k in chosen}
        if scorer is not None:
            score = scorer.score(chosen)
        else:
            affected = {id(i): i for fid in revoked for i in under[fid]}.values()
            score = kept + _score_without(affected, revoked) - sum(i.kept for i in affected)
        grade_at = _band_of(bands, score)
        if grade_at <= target:
            total += 1
            if len(found) < MAX_SETS:
                found.append(
                    Revocation(
                        finding_ids=forced + sorted(revoked),
                        score=score,
                        grade=bands[grade_at].grade,
                    )
                )
    return found, total, True


def _fewest(
    indicators: Sequence[IndicatorExplanation], *, need: int
) -> tuple[int, set[str]] | None:
    """The fewest findings whose revocation gives back at least `need` points, and one such set
    (None when even all of them do not). Exact: revoking k findings of one indicator gives back
    the most when they are its k largest counts (all of them, for an all-or-nothing one), so a
    knapsack over indicators by number of findings finds the least number."""
    if need <= 0:
        return 0, set()
    best: dict[int, tuple[int, list[str]]] = {0: (0, [])}  # findings → (points back, which)
    for indicator in indicators:
        if not indicator.findings:
            continue
        ranked = sorted(indicator.findings, key=lambda f: -f.count)
        options = [(k, _given_back(indicator, k, ranked)) for k in range(1, len(ranked) + 1)]
        merged = dict(best)
        for used, (back, which) in best.items():
            for k, more in options:
                if more <= 0:
                    continue
                candidate = (back + more, which + [f.finding_id for f in ranked[:k]])
                if candidate[0] > merged.get(used + k, (-1, []))[0]:
                    merged[used + k] = candidate
        best = merged
    for used in sorted(best):
        back, which = best[used]
        if back >= need:
            return used, set(which)
    return None


def _given_back(indicator: IndicatorExplanation, k: int, ranked: Sequence[FindingCited]) -> int:
    """Points `indicator` gives back when its `k` largest findings (by count) are revoked."""
    if indicator.mode == "all":
        return indicator.points - indicator.kept if k == len(ranked) else 0
    units = sum(f.count for f in ranked[k:])
    return max(0, indicator.points - units * (indicator.deduction or 0)) - indicator.kept


class _Scorer:
    """`_score_without` a set of findings given by position in `counted` (each finding once):
    the score kept, corrected for the indicators they are under, from figures worked out once
    (up to MAX_TRIES sets are scored per explanation)."""

    def __init__(self, counted: Sequence[tuple[IndicatorExplanation, str, int]], kept: int):
        self.kept = kept
        self.owner = [id(i) for i, _, _ in counted]
        self.counts = [count for _, _, count in counted]
        self.figures = {
            id(i): (
                i.mode == "all",
                len(i.findings),
                sum(f.count for f in i.findings),
                i.points,
                i.deduction or 0,
                i.kept,
            )
            for i, _, _ in counted
        }

    def score(self, chosen: Sequence[int]) -> int:
        number: dict[int, int] = {}
        units: dict[int, int] = {}
        owner, counts = self.owner, self.counts
        for k in chosen:
            o = owner[k]
            number[o] = number.get(o, 0) + 1
            units[o] = units.get(o, 0) + counts[k]
        score = self.kept
        for o, revoked in number.items():
            whole, findings, total, points, deduction, kept = self.figures[o]
            if whole:
                now = points if revoked == findings else 0
            else:
                now = max(0, points - (total - units[o]) * deduction)
            score += now - kept
        return score


def _score_without(indicators: Iterable[IndicatorExplanation], revoked: set[str]) -> int:
    """The score with the `revoked` findings no longer counted (vetoes aside)."""
    score = 0
    for i in indicators:
        remaining = [f for f in i.findings if f.finding_id not in revoked]
        if len(remaining) == len(i.findings):
            score += i.kept
        elif i.mode == "all":
            score += 0 if remaining else i.points
        else:
            units = sum(f.count for f in remaining)
            score += max(0, i.points - units * (i.deduction or 0))
    return score


def _band_of(bands: Sequence[Band], score: int) -> int:
    """Index of the band (highest first) a score falls in."""
    return next(k for k, b in enumerate(bands) if b.min <= score <= b.max)
