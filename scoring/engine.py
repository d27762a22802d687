"""The scoring engine: institutions and findings in, one rated row per institution out.

Vectorised over the whole district (or the whole country): findings are matched to
institutions and indicators by integer ids, the units each institution lost per indicator are
summed with one `np.add.at`, and the measure's arithmetic (all-or-nothing, per unit capped at
the indicator's points, vetoes, grade bands) is applied to the resulting matrix. No Python loop
runs over institutions or findings, and nothing here reads or writes anything.

Input frames follow the contract in docs/measure.md as `scoring.inputs` normalises it:
institutions have unique `uscc` and a `name`; findings have `uscc`, `indicator`,
`occurred_on` (datetime64), `count` (int >= 1) and `status` (`active` | `revoked`).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.errors import ScoringError
from scoring.i18n import _
from scoring.rules import Mode, RuleSet, RulesInForce
from scoring.uscc_columns import positions

RESULT_COLUMNS = ("uscc", "name", "score", "grade", "vetoed", "vetoes")
"""The leading columns of a rating; one column per indicator code (points kept) follows."""


def dated_in(findings: pd.DataFrame, year: int) -> npt.NDArray[np.bool_]:
    """Which findings occurred in calendar year `year`, whatever their status."""
    day = findings["occurred_on"].to_numpy().astype("datetime64[D]")
    return (day >= np.datetime64(f"{year:04d}-01-01")) & (
        day < np.datetime64(f"{year + 1:04d}-01-01")
    )


def counted(findings: pd.DataFrame, year: int, since: date | None = None) -> npt.NDArray[np.bool_]:
    """Which findings count for `year`: active ones that occurred in that calendar year, and
    not before `since` (the day the measure came into force: it is not retroactive)."""
    keep = dated_in(findings, year) & findings["status"].eq("active").to_numpy(dtype=bool)
    if since is not None and since > date(year, 1, 1):
        day = findings["occurred_on"].to_numpy().astype("datetime64[D]")
        keep &= day >= np.datetime64(since.isoformat())
    return keep


def units_lost(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    codes: list[str],
    year: int,
    since: date | None = None,
) -> npt.NDArray[np.int64]:
    """Matrix (institution × code) of the units counted against each institution in `year`
    (from `since`, when the measure came into force during the year)."""
    keep = np.flatnonzero(counted(findings, year, since))
    # Match every row, then keep the counted ones: filtering the frame first copied all its
    # columns (10M rows of ids, references and notes), which cost more than the matching.
    who = positions(findings["uscc"], institutions["uscc"])[keep]
    what = code_positions(findings["indicator"], codes)[keep]
    if (who < 0).any():
        unknown = findings["uscc"].iloc[keep[np.argmin(who)]]
        raise ScoringError(
            _("finding for an institution not in the list: {uscc}").format(uscc=unknown)
        )
    if (what < 0).any():
        unknown = findings["indicator"].iloc[keep[np.argmin(what)]]
        raise ScoringError(
            _("finding against an indicator not in force in {year}: {indicator}").format(
                year=year, indicator=unknown
            )
        )
    n, k = len(institutions), len(codes)
    units = np.zeros(n * k, dtype=np.int64)  # summed as integers: no float matrix to convert
    np.add.at(units, who.astype(np.int64) * k + what, findings["count"].to_numpy(np.int64)[keep])
    return units.reshape(n, k)


def code_positions(values: pd.Series, codes: list[str]) -> npt.NDArray[np.intp]:
    """Each value's position in the short list `codes` (-1 when absent), by Arrow's `index_in`
    on the column as it is (no combined copy, no hash of every row's string in Python)."""
    array = pa.array(values, type=pa.large_string(), from_pandas=True)
    found = pc.index_in(array, value_set=pa.array(codes, type=pa.large_string()))
    return np.asarray(found.fill_null(-1), dtype=np.intp)  # a null is no code


def rate(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    rules: RuleSet | RulesInForce,
    year: int | None = None,
    *,
    scale: str | None = None,
) -> pd.DataFrame:
    """Rate every institution for `year`: score, grade, vetoes and points kept per indicator.

    `rules` is the whole RuleSet (the values in force in `year` on `scale` are picked) or
    RulesInForce already picked. Row i of the result is institution i of the input.
    """
    force = rules if isinstance(rules, RulesInForce) else rules.in_force(_year(year), scale)
    if not institutions["uscc"].is_unique:
        raise ScoringError(_("institution list has duplicate credit codes"))
    indicator_codes = [i.code for i in force.indicators]
    veto_codes = [v.code for v in force.vetoes]
    units = units_lost(
        institutions, findings, indicator_codes + veto_codes, force.year, force.counts_from
    )
    kept = _points_kept(units[:, : len(indicator_codes)], force)
    vetoed_by = units[:, len(indicator_codes) :] > 0

    score = kept.sum(axis=1, dtype=np.int64)
    vetoed = vetoed_by.any(axis=1)
    grade = _grades(score, force)
    grade[vetoed] = force.lowest_grade.grade

    result = pd.DataFrame(
        {
            # As they are: to_numpy() made a Python string per institution, and back.
            "uscc": institutions["uscc"].astype("str").array,
            "name": institutions["name"].astype("str").array,
            "score": score,
            "grade": grade,
            "vetoed": vetoed,
            "vetoes": _veto_lists(vetoed_by, veto_codes),
        }
    )
    points = pd.DataFrame(kept, columns=indicator_codes)
    return pd.concat([result, points], axis=1)


def _year(year: int | None) -> int:
    if year is None:
        raise ScoringError(_("a year is needed to pick the rules in force"))
    return year


def _points_kept(units: npt.NDArray[np.int64], force: RulesInForce) -> npt.NDArray[np.int16]:
    points = np.array([i.points for i in force.indicators], dtype=np.int64)
    per_unit = np.array(
        [i.deduction if i.rule.mode is Mode.PER else i.points for i in force.indicators],
        dtype=np.int64,
    )
    # All-or-nothing: per_unit == points, so one finding already takes everything.
    # Clip units first so a huge count cannot overflow the multiplication.
    # In place: one temporary (institutions × indicators) matrix instead of four.
    lost = np.minimum(units, points)
    lost *= per_unit
    np.minimum(lost, points, out=lost)
    np.subtract(points, lost, out=lost)
    return lost.astype(np.int16)


def _grades(score: npt.NDArray[np.int64], force: RulesInForce) -> npt.NDArray[np.object_]:
    ascending = force.bands[::-1]
    floors = np.array([b.min for b in ascending])
    labels = np.array([b.grade for b in ascending], dtype=object)
    return labels[np.searchsorted(floors, score, side="right") - 1]


def _veto_lists(vetoed_by: npt.NDArray[np.bool_], codes: list[str]) -> npt.NDArray[np.object_]:
    """Each row's tuple of veto codes, by table look-up of the row's bit pattern (no row loop)."""
    pattern = vetoed_by.astype(np.int64) @ (1 << np.arange(len(codes), dtype=np.int64))
    table = np.empty(1 << len(codes), dtype=object)
    table[:] = [tuple(c for j, c in enumerate(codes) if p >> j & 1) for p in range(len(table))]
    return table[pattern]
