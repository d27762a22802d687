"""The measure applied one institution at a time in plain Python: the benchmark's yardstick.

The engine's speed only means something against the obvious way of doing the job, and its
answers only if they equal that way's. This evaluator is that way: findings are grouped per
institution in a dict, then each institution is rated in a loop that reads like docs/measure.md
(start at full points, deduct per finding, 扣完为止, sum, band, veto). It shares no code with
`scoring.engine` beyond the rules in force, which both take from `scoring.rules`.

(`tests/oracle.py` is the tests' own reference; this one is kept apart from it, so the
benchmark's yardstick and the tests' cannot share a mistake.)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

import pandas as pd

from scoring.rules import Mode, RulesInForce


@dataclass(frozen=True)
class ReferenceRating:
    uscc: str
    score: int
    grade: str
    vetoes: tuple[str, ...]
    points: tuple[int, ...]  # kept, in the order of the indicators in force


def rate_reference(
    institutions: pd.DataFrame, findings: pd.DataFrame, force: RulesInForce
) -> list[ReferenceRating]:
    """Rate every institution of `institutions`, in its row order, for `force.year`."""
    # not before the measure was issued: it is not retroactive
    first, last = max(date(force.year, 1, 1), force.info.issued_on), date(force.year, 12, 31)
    # Plain Python values, one list per column (dates as datetime.date).
    rows = zip(
        findings["uscc"].tolist(),
        findings["indicator"].tolist(),
        findings["occurred_on"].to_numpy().astype("datetime64[D]").tolist(),
        findings["count"].tolist(),
        findings["status"].tolist(),
        strict=True,
    )
    counted: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for uscc, indicator, day, count, status in rows:
        if status == "active" and first <= day <= last:
            counted[uscc].append((indicator, int(count)))

    indicators = [(i.code, i.points, i.rule.mode, i.deduction) for i in force.indicators]
    known = {i.code for i in force.indicators}
    veto_codes = [v.code for v in force.vetoes]
    lowest = force.lowest_grade.grade
    bands = [(b.min, b.max, b.grade) for b in force.bands]

    ratings = []
    for uscc in institutions["uscc"].tolist():
        units: dict[str, int] = {}
        vetoed: set[str] = set()
        for indicator, count in counted.get(uscc, ()):
            if indicator in veto_codes:
                vetoed.add(indicator)
            elif indicator in known:
                units[indicator] = units.get(indicator, 0) + count
            else:
                raise ValueError(f"finding against {indicator!r}, not in force in {force.year}")
        kept = []
        for code, points, mode, deduction in indicators:
            found = units.get(code, 0)
            if found == 0:
                kept.append(points)
            elif mode is Mode.ALL:
                kept.append(0)
            else:
                assert deduction is not None
                kept.append(max(points - deduction * found, 0))
        score = sum(kept)
        grade = next(g for low, high, g in bands if low <= score <= high)
        vetoes = tuple(c for c in veto_codes if c in vetoed)
        ratings.append(
            ReferenceRating(uscc, score, lowest if vetoes else grade, vetoes, tuple(kept))
        )
    return ratings


def differences(rated: pd.DataFrame, reference: list[ReferenceRating], codes: list[str]) -> int:
    """How many institutions the engine's rating and the reference disagree on (any field)."""
    engine_rows = zip(
        rated["uscc"].tolist(),
        rated["score"].tolist(),
        rated["grade"].tolist(),
        [tuple(v) for v in rated["vetoes"].tolist()],
        map(tuple, rated[codes].to_numpy().tolist()),
        strict=True,
    )
    return sum(
        (u, s, g, v, p) != (r.uscc, r.score, r.grade, r.vetoes, r.points)
        for (u, s, g, v, p), r in zip(engine_rows, reference, strict=True)
    )
