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

This runs on every supervisor lookup, so the smallest sets are counted, not enumerated (an
institution with a hundred findings has more sets of the least size than could ever be tried).
What an indicator gives back depends only on how many of its findings are revoked and on the
units left under it, and the units left matter only up to the indicator's cap; so the sets are
counted by a knapsack over indicators whose states are (findings revoked, points given back),
and the first MAX_SETS sets are listed by a depth-first search that enters only branches able
to reach the next grade with the findings still to choose. Both are exact, and bounded by the
number of findings, the grade's points and MAX_SETS, never by the number of sets. Most often
one finding suffices, or two: then each finding alone, or each pair (up to MAX_PAIRS), is
simply tried, which is cheaper still.

`lift` reads only a few attributes of an explanation (`Explained`): a caller may pass any
object that has them, not only `scoring.explain.Explanation`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from scoring.rules import Band

MAX_SETS = 10
"""Sets listed at most (all of the smallest size are counted)."""

MAX_PAIRS = 200
"""Pairs of findings tried at most, when no finding suffices alone, before the search."""

MAX_TRIES = 2_000
"""Combinations tried at most by the enumeration kept for explanations the counting does not
cover (a finding id twice, or points that do not follow the measure), before it settles for a
set it can prove suffices."""


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


class CitedFinding(Protocol):
    """A finding as `lift` reads it (`scoring.explain.FindingCited` is one)."""

    @property
    def finding_id(self) -> str: ...


class CountedFinding(CitedFinding, Protocol):
    @property
    def count(self) -> int: ...


class ExplainedVeto(Protocol):
    @property
    def findings(self) -> Sequence[CitedFinding]: ...


class ExplainedIndicator(Protocol):
    """An indicator as `lift` reads it (`scoring.explain.IndicatorExplanation` is one)."""

    @property
    def code(self) -> str: ...
    @property
    def findings(self) -> Sequence[CountedFinding]: ...
    @property
    def mode(self) -> str: ...  # all | per
    @property
    def points(self) -> int: ...
    @property
    def deduction(self) -> int | None: ...
    @property
    def kept(self) -> int: ...


class Explained(Protocol):
    """What `lift` reads of an explanation: `scoring.explain.Explanation`, or any lighter
    object with these attributes (a caller holding the figures need not build the model)."""

    @property
    def grade(self) -> str: ...
    @property
    def score(self) -> int: ...
    @property
    def vetoed(self) -> bool: ...
    @property
    def vetoes(self) -> Sequence[ExplainedVeto]: ...
    @property
    def indicators(self) -> Sequence[ExplainedIndicator]: ...


def lift(explanation: Explained, bands: Sequence[Band]) -> Lift:
    """What lifts `explanation`'s institution one grade up on `bands` (highest grade first)."""
    order = [b.grade for b in bands]
    here = order.index(explanation.grade)
    if here == 0:
        return _at_the_top(explanation.grade)
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
        size = len(sets[0][0])
        summary += f"撤销 {size} 条认定记录即可达到（共 {total} 种最少组合）。"
    elif sets:
        size = len(sets[0][0])
        summary += f"撤销 {size} 条认定记录即可达到（这是最少条数；组合太多，只列出一种）。"
    else:
        summary += "撤销本年度任何认定记录都不能达到。"
    # Validated from plain values in one call: pydantic checks the nested sets this way in
    # half the time it takes to build a Revocation for each.
    return Lift.model_validate(
        {
            "grade": explanation.grade,
            "next_grade": target.grade,
            "next_grade_min": target.min,
            "points_missing": missing,
            "vetoed": explanation.vetoed,
            "summary": summary,
            "revocations": [
                {"finding_ids": ids, "score": score, "grade": grade} for ids, score, grade in sets
            ],
            "revocations_total": total,
            "exhaustive": exhaustive,
        }
    )


@functools.lru_cache(maxsize=16)
def _at_the_top(grade: str) -> Lift:
    """What lifts an institution at the top grade: nothing. Most lookups are of such
    institutions, and the answer depends on the grade alone, so one (frozen) answer per grade
    is built once."""
    return Lift(
        grade=grade,
        next_grade=None,
        next_grade_min=None,
        points_missing=None,
        vetoed=False,
        summary=f"已是最高等级 {grade}。",
        revocations=[],
        revocations_total=0,
        exhaustive=True,
    )


_Set = tuple[list[str], int, str]
"""A revocation: the finding ids, the score and the grade they reach."""


def _smallest_sets(
    e: Explained, bands: Sequence[Band], target: int
) -> tuple[list[_Set], int, bool]:
    """The smallest sets of counted findings whose revocation reaches band `target` or above:
    (up to MAX_SETS of them, how many there are, whether the count is exact)."""
    # Every veto finding must go; the search is over the others.
    forced = sorted({f.finding_id for v in e.vetoes for f in v.findings})
    groups = [_Group(i) for i in e.indicators if i.findings]
    # The score is the points kept, indicator by indicator (as the engine counts it), so the
    # indicators without findings need not be read.
    need = bands[target].min - e.score
    ids = [fid for g in groups for fid in g.ids]
    exact = len(set(ids)) == len(ids) and all(g.exact for g in groups)
    # Most often one finding suffices: then each is tried alone, and that is the whole search.
    alone = [
        ([i], back) for g in groups for i, back in zip(g.ids, g.alone, strict=True) if back >= need
    ]
    pairs = len(ids) * (len(ids) - 1) // 2
    if exact and need > 0 and alone:
        listed, total = alone[:MAX_SETS], len(alone)
    elif exact and need > 0 and pairs <= MAX_PAIRS and (both := _pairs(groups, need)):
        listed, total = both[:MAX_SETS], len(both)
    else:
        for g in groups:
            g.prepare()
        best = _best(groups)
        size = next((r for r, most in enumerate(best[0]) if most >= need), None)
        if size is None:
            return [], 0, True
        if not exact:
            return _enumerated(e, bands, target, forced, groups, best, size)
        listed = _listed(groups, best, size, need)
        # Fewer than MAX_SETS listed: the search went through them all.
        total = len(listed) if len(listed) < MAX_SETS else _counted(groups, best, size, need)
    sets = []
    grades: dict[int, str] = {}  # sets often reach the same score
    for chosen, back in listed:
        score = e.score + back
        if score not in grades:
            grades[score] = bands[_band_of(bands, score)].grade
        sets.append((forced + sorted(chosen), score, grades[score]))
    return sets, total, True


def _pairs(groups: Sequence[_Group], need: int) -> list[tuple[list[str], int]]:
    """Every pair of findings that gives back at least `need` points, in the order
    `itertools.combinations` gives them: when no finding suffices alone, two most often do,
    and trying a few pairs is cheaper than the search."""
    flat = [(g, k) for g in groups for k in range(g.size)]
    found = []
    for a, (g, k) in enumerate(flat):
        for h, m in flat[a + 1 :]:
            back = g.both(k, m) if h is g else g.alone[k] + h.alone[m]
            if back >= need:
                found.append(([g.ids[k], h.ids[m]], back))
    return found


class _Group:
    """One indicator's counted findings, in the explanation's order, and what revoking some of
    them gives back: what the count and the search need, worked out once."""

    __slots__ = (
        "_tops",
        "alone",
        "cap",
        "counts",
        "deduction",
        "every",
        "exact",
        "ids",
        "indicator",
        "kept",
        "points",
        "size",
        "some",
        "suffix",
        "total",
        "whole",
    )

    cap: int
    some: list[int]
    suffix: list[int]
    _tops: list[list[int] | None]

    def __init__(self, indicator: ExplainedIndicator):
        """What the lone-finding case needs (most lookups); `prepare` adds the search's."""
        self.indicator = indicator
        findings = indicator.findings
        self.ids = [f.finding_id for f in findings]
        self.counts = counts = [f.count for f in findings]
        self.size = len(counts)
        self.points = points = indicator.points
        self.kept = kept = indicator.kept
        self.deduction = deduction = indicator.deduction or 0
        self.whole = indicator.mode == "all"
        self.total = total = sum(counts)
        self.every = points - kept  # what revoking all gives back
        # What revoking each finding alone gives back.
        if self.size == 1:
            self.alone = [self.every]
        elif self.whole:
            self.alone = [-kept] * self.size
        else:
            self.alone = [max(0, points - (total - c) * deduction) - kept for c in counts]
        # Whether the count and the search are exact here: units are never negative, and no
        # revocation takes points away (the points kept are the measure's). The least given
        # back is with all revoked, or the smallest finding alone (the most units left).
        self.exact = min(counts) >= 0 and deduction >= 0 and min(self.every, *self.alone) >= 0

    def both(self, k: int, m: int) -> int:
        """What revoking findings k and m of this group gives back."""
        if self.size == 2:
            return self.every
        if self.whole:
            return -self.kept
        units = self.total - self.counts[k] - self.counts[m]
        return max(0, self.points - units * self.deduction) - self.kept

    def prepare(self) -> None:
        """What the search needs: what revoking some but not all gives back, by the units left
        (`some`). Units left at or above `cap` leave no points: they are followed up to it."""
        points, kept, deduction = self.points, self.kept, self.deduction
        if self.whole:
            self.cap, self.some = 0, [-kept]
        elif deduction <= 0:  # nothing lost per unit (a negative deduction: not `exact`)
            self.cap, self.some = 0, [max(0, points) - kept]
        else:
            self.cap = -(-points // deduction)
            self.some = [*range(points - kept, points - kept - self.cap * deduction, -deduction)]
            self.some.append(max(0, points - self.cap * deduction) - kept)
        # suffix[t]: the units of findings t and after.
        self.suffix = [*itertools.accumulate(reversed(self.counts), initial=0)][::-1]
        self._tops = [None] * (self.size + 1)

    def back(self, revoked: int, left: int) -> int:
        """Points given back when `revoked` of the findings are revoked and `left` units (up to
        `cap`) remain: what `_score_without` counts. An untouched indicator keeps its points."""
        if revoked == 0:
            return 0
        return self.every if revoked == self.size else self.some[left]

    def tops(self, t: int) -> list[int]:
        """tops(t)[q]: the units of the q largest findings from finding t on (the q whose
        revocation gives back the most)."""
        tops = self._tops[t]
        if tops is None:
            tops = self._tops[t] = [
                *itertools.accumulate(sorted(self.counts[t:], reverse=True), initial=0)
            ]
        return tops

    def gains(self) -> list[int]:
        """gains()[k]: the most points revoking k of these findings gives back."""
        tops, total, some, cap = self.tops(0), self.suffix[0], self.some, self.cap
        middle = [some[u if (u := total - tops[k]) < cap else cap] for k in range(1, self.size)]
        return [0, *middle, self.every]

    def ways(self, most_revoked: int, need: int) -> dict[tuple[int, int], int]:
        """How many ways to revoke k of these findings (k up to `most_revoked`) give back b
        points (b counted up to `need`): {(k, b): ways}."""
        # By (revoked, units kept up to cap): each finding is revoked or kept.
        table = {(0, 0): 1}
        cap = self.cap
        for count in self.counts:
            following: dict[tuple[int, int], int] = {}
            for (k, left), w in table.items():
                if k < most_revoked:
                    following[k + 1, left] = following.get((k + 1, left), 0) + w
                units = left + count
                key = (k, units if units < cap else cap)
                following[key] = following.get(key, 0) + w
            table = following
        ways: dict[tuple[int, int], int] = {}
        for (k, left), w in table.items():
            key = (k, min(self.back(k, left), need))
            ways[key] = ways.get(key, 0) + w
        return ways


def _best(groups: Sequence[_Group]) -> list[list[int]]:
    """best[j][r]: the most points findings of groups j and after give back when exactly r of
    them are revoked (the r that give back most within each group are its largest counts, all
    of them for an all-or-nothing indicator), by a knapsack over groups from the last."""
    best = [[0]]
    for g in reversed(groups):
        after, gains = best[-1], g.gains()
        if len(after) == 1:
            best.append(gains)
            continue
        row = [-(1 << 62)] * (len(after) + g.size)
        for k, back in enumerate(gains):
            for r, rest in enumerate(after, start=k):
                if back + rest > row[r]:
                    row[r] = back + rest
        best.append(row)
    return best[::-1]


def _counted(groups: Sequence[_Group], best: list[list[int]], size: int, need: int) -> int:
    """How many sets of `size` findings give back at least `need` points: a knapsack over
    groups with states (findings revoked, points given back up to `need`) → ways, keeping only
    states from which `best` can still reach `need` with the findings left to choose."""
    states = {(0, min(0, need)): 1}
    for j, g in enumerate(groups):
        after = best[j + 1]
        options = g.ways(size, need).items()
        following: dict[tuple[int, int], int] = {}
        for (k, got), w in states.items():
            for (more, back), ways in options:
                chosen = k + more
                if chosen > size or size - chosen >= len(after):
                    continue
                total = got + back
                if total > need:
                    total = need
                elif total + after[size - chosen] < need:
                    continue
                following[chosen, total] = following.get((chosen, total), 0) + w * ways
        states = following
    return states.get((size, need), 0)


_Chosen = tuple[str, "_Chosen"] | None
"""The ids chosen on a branch, last first (shared by the branches that extend it)."""


def _listed(
    groups: Sequence[_Group], best: list[list[int]], size: int, need: int
) -> list[tuple[list[str], int]]:
    """The first MAX_SETS sets of `size` findings that give back at least `need` points, in the
    order `itertools.combinations` gives them, each with the points it gives back.

    Depth first, entering a branch only when some way to choose its remaining findings gives
    back enough (`can_reach`): every branch entered ends in a set, so the work is bounded by
    the number of findings times MAX_SETS, however many sets there are. A branch is a group j,
    its next finding t, the findings still to choose, the points given back by the groups
    before, the findings revoked in group j before t and the units kept among them (up to the
    group's cap), and the ids chosen; on the stack with u, the next finding to try revoking
    (u past the group's last: none more here, on to the next group)."""
    figures = [(g.ids, g.size, g.cap, g.some, g.every, g.suffix, g) for g in groups]

    def can_reach(
        j: int, t: int, revoked: int, left: int, budget: int, short: int, least: int = 0
    ) -> bool:
        """Whether `budget` findings more, from finding t of group j on, can give back `short`
        points more: some number of them (`least` or more) from group j, its largest
        (`tops`), and the rest from the groups after (at most `best[j + 1]`)."""
        if j == len(figures):
            return budget == 0 and short <= 0
        _, size, cap, some, every, suffix, g = figures[j]
        after, top, rest = best[j + 1], g.tops(t), left + suffix[t]
        for more in range(max(least, budget + 1 - len(after)), min(budget, size - t) + 1):
            r = revoked + more  # what group j gives back (`_Group.back`), written out
            if r == 0:
                back = 0
            elif r == size:
                back = every
            else:
                units = rest - top[more]
                back = some[units if units < cap else cap]
            if back + after[budget - more] >= short:
                return True
        return False

    if not can_reach(0, 0, 0, 0, size, need):
        return []
    if size == 0:
        return [([], 0)]
    found: list[tuple[list[str], int]] = []
    stack: list[tuple[int, int, int, int, int, int, int, _Chosen]] = [
        (0, 0, 0, size, 0, 0, 0, None)
    ]
    while stack:
        j, t, u, budget, got, revoked, left, chosen = stack.pop()
        ids, size, cap, some, every, suffix, _ = figures[j]
        if u < size:  # revoke finding u (skipping t..u-1), then try u + 1 instead
            stack.append((j, t, u + 1, budget, got, revoked, left, chosen))
            units = left + suffix[t] - suffix[u]
            kept = units if units < cap else cap
            if budget > 1:
                if can_reach(j, u + 1, revoked + 1, kept, budget - 1, need - got):
                    branch = (j, u + 1, u + 1, budget - 1, got, revoked + 1, kept, (ids[u], chosen))
                    stack.append(branch)
                elif not can_reach(
                    j,
                    u + 1,
                    revoked,
                    min(kept + suffix[u] - suffix[u + 1], cap),
                    budget,
                    need - got,
                    least=1,
                ):
                    # None of the findings after u either: straight on to the next group.
                    stack[-1] = (j, t, size, budget, got, revoked, left, chosen)
                continue
            # The last finding: the rest of the group is kept, the groups after untouched.
            units = kept + suffix[u + 1]
            back = every if revoked + 1 == size else some[units if units < cap else cap]
            if got + back >= need:
                chosen_ids = [ids[u]]
                while chosen is not None:
                    chosen_ids.append(chosen[0])
                    chosen = chosen[1]
                found.append((chosen_ids, got + back))
                if len(found) == MAX_SETS:
                    break
        else:  # none more from this group: on to the next
            units = left + suffix[t]
            here = 0 if revoked == 0 else every if revoked == size else some[min(units, cap)]
            if can_reach(j + 1, 0, 0, 0, budget, need - got - here):
                stack.append((j + 1, 0, 0, budget, got + here, 0, 0, chosen))
    return found


def _enumerated(
    e: Explained,
    bands: Sequence[Band],
    target: int,
    forced: list[str],
    groups: Sequence[_Group],
    best: list[list[int]],
    size: int,
) -> tuple[list[_Set], int, bool]:
    """The sets of `size` findings found by trying them all, up to MAX_TRIES, each scored by
    `_score_without` as it stands: for explanations the count does not cover (an id twice,
    revoking both findings; points kept unlike the measure's). Beyond MAX_TRIES, one set that
    gives back the most (`best`) is listed: of the least size, not the only one."""
    ids = [fid for g in groups for fid in g.ids]
    under: dict[str, list[ExplainedIndicator]] = {}
    for g in groups:
        for fid in g.ids:
            under.setdefault(fid, []).append(g.indicator)
    kept = sum(i.kept for i in e.indicators)
    found: list[_Set] = []
    total = 0
    for tries, chosen in enumerate(itertools.combinations(range(len(ids)), size), start=1):
        if tries > MAX_TRIES:  # too many to count: one set of the fewest findings will do
            one = _one_of_the_most(groups, best, size)
            score = _score_without(e.indicators, one)
            return [(forced + sorted(one), score, bands[_band_of(bands, score)].grade)], 0, False
        revoked = {ids[k] for k in chosen}
        affected = {id(i): i for fid in revoked for i in under[fid]}.values()
        score = kept + _score_without(affected, revoked) - sum(i.kept for i in affected)
        grade_at = _band_of(bands, score)
        if grade_at <= target:
            total += 1
            if len(found) < MAX_SETS:
                found.append((forced + sorted(revoked), score, bands[grade_at].grade))
    return found, total, True


def _one_of_the_most(groups: Sequence[_Group], best: list[list[int]], size: int) -> set[str]:
    """`size` findings that give back `best[0][size]`: in each group its largest, as many as
    the knapsack took from it."""
    one: set[str] = set()
    for j, g in enumerate(groups):
        after, gains = best[j + 1], g.gains()
        k = next(
            k
            for k in range(min(size, g.size) + 1)
            if size - k < len(after) and gains[k] + after[size - k] == best[j][size]
        )
        ranked = sorted(range(g.size), key=lambda u: -g.counts[u])
        one.update(g.ids[u] for u in ranked[:k])
        size -= k
    return one


def _score_without(indicators: Iterable[ExplainedIndicator], revoked: set[str]) -> int:
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
