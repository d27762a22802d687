"""A plain reference evaluator of the measure, used only by tests to check the engine.

It rates ONE institution at a time and follows docs/measure.md line by line, in plain Python
(no numpy, no pandas arithmetic), so that it is easy to read against the measure and shares
no code with `scoring.engine`:

1. The values that rate a year are those in force on its 31 December.
2. Each indicator starts at its full points.
3. A finding counts when it is active and occurred within the calendar year, and not before
   the measure was issued (it is not retroactive: in 2022, only 3–31 December counts).
4. An all-or-nothing indicator loses all its points on any counted finding; a per-unit
   indicator loses deduction × count for each, and never goes below 0 (扣完为止).
5. The score is the sum of the indicator scores; the grade is the band of the scale that
   holds the score.
6. Any counted veto finding gives the lowest grade of the scale; the score is still computed.

It reads the `RuleSet` models of `scoring.rules`, and nothing else from the package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import pandas as pd

from scoring.rules import Band, Mode, RuleSet

T = TypeVar("T")


@dataclass(frozen=True)
class Rating:
    """What the measure says about one institution for one year."""

    uscc: str
    score: int
    grade: str
    vetoes: tuple[str, ...]  # in the order the rules list them
    points: dict[str, int]  # indicator code -> points kept


def value_in_force(values: Mapping[date, T] | None, day: date) -> T | None:
    """The value dated latest on or before `day`; None when none had started."""
    if not values:
        return None
    best: date | None = None
    for started in values:
        if started <= day and (best is None or started > best):
            best = started
    return None if best is None else values[best]


def as_date(value: Any) -> date:
    """A finding's `occurred_on` as a date (datetime, pandas Timestamp or date)."""
    if isinstance(value, datetime):  # pd.Timestamp is a datetime too
        return value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()


def finding_counts(finding: Mapping[str, Any], year: int, issued_on: date) -> bool:
    """Active, occurred between 1 January and 31 December of `year` inclusive, and not before
    the measure was issued."""
    if finding.get("status", "active") != "active":
        return False
    day = as_date(finding["occurred_on"])
    return date(year, 1, 1) <= day <= date(year, 12, 31) and day >= issued_on


def bands_in_force(rules: RuleSet, year: int, scale: str | None = None) -> list[Band]:
    wanted = scale if scale is not None else rules.info.default_scale
    for candidate in rules.scales:
        if candidate.code == wanted:
            bands = value_in_force(candidate.bands, date(year, 12, 31))
            if bands is None:
                raise ValueError(f"scale {wanted} has no bands in force in {year}")
            return list(bands)
    raise ValueError(f"no scale {wanted}")


def rate_one(
    uscc: str,
    findings: Iterable[Mapping[str, Any]],
    rules: RuleSet,
    year: int,
    scale: str | None = None,
) -> Rating:
    """Rate the institution `uscc`; `findings` may hold other institutions' findings too."""
    last_day = date(year, 12, 31)

    # The indicators in force, each starting at its full points.
    full: dict[str, int] = {}
    deduction: dict[str, int | None] = {}
    mode: dict[str, Mode] = {}
    for indicator in rules.indicators:
        points = value_in_force(indicator.points, last_day)
        if points is None:
            continue
        full[indicator.code] = points
        deduction[indicator.code] = value_in_force(indicator.deduction, last_day)
        mode[indicator.code] = indicator.mode
    veto_codes = [v.code for v in rules.vetoes if v.in_force_from <= last_day]

    # The findings that count, against this institution.
    lost: dict[str, int] = {code: 0 for code in full}
    vetoed: set[str] = set()
    for finding in findings:
        if finding["uscc"] != uscc or not finding_counts(finding, year, rules.info.issued_on):
            continue
        code = finding["indicator"]
        count = int(finding.get("count", 1))
        if code in veto_codes:
            vetoed.add(code)
        elif code not in full:
            raise ValueError(f"finding against {code!r}, not in force in {year}")
        elif mode[code] is Mode.ALL:
            lost[code] = full[code]
        else:
            per_unit = deduction[code]
            assert per_unit is not None, f"per-unit indicator {code} without a deduction"
            lost[code] += per_unit * count

    kept = {code: max(full[code] - lost[code], 0) for code in full}
    score = sum(kept.values())

    bands = bands_in_force(rules, year, scale)
    holding = [b for b in bands if b.min <= score <= b.max]
    if len(holding) != 1:
        raise ValueError(f"score {score} is in {len(holding)} bands")
    grade = holding[0].grade
    vetoes = tuple(code for code in veto_codes if code in vetoed)
    if vetoes:
        grade = min(bands, key=lambda b: b.min).grade
    return Rating(uscc=uscc, score=score, grade=grade, vetoes=vetoes, points=kept)


def rate_all(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    rules: RuleSet,
    year: int,
    scale: str | None = None,
) -> list[Rating]:
    """`rate_one` for every institution of the frame, in its row order."""
    records = findings.to_dict("records")
    return [rate_one(str(u), records, rules, year, scale) for u in institutions["uscc"]]
