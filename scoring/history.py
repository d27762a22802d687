"""Ratings over several years, the serious outcome that follows them, and synthetic histories.

Calibration (issue 10) asks how well a year's rating foresees trouble the next year. This
module supplies the two things it needs:

* `serious_outcomes`: from institutions and findings over several years (the input contract of
  docs/measure.md), one row per institution and year t rated in t and in t+1: the rating of t
  (score, grade, points lost per indicator) and whether a *serious outcome* followed in t+1.
  A serious outcome in t+1 is any counted finding under `no_penalties` (an administrative
  penalty), any veto, or the lowest grade of the four-class scale. "Counted" is the engine's
  notion (`scoring.engine.counted`: active and dated in the year). Closed institutions are left
  out. Pure and vectorised: the engine rates each year once.

* `synthetic_history`: a seeded synthetic district over several years whose hidden
  per-institution risk drives both the findings and the next year's outcomes, so calibration
  code can be checked against a truth it cannot see in the inputs. 合成数据：everything it
  returns is synthetic (see `SYNTHETIC_NOTICE`, which reports built on it must print).

Nothing here reads or writes anything, and no global random state is used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from scoring.engine import counted, rate
from scoring.inputs import FINDING_STATUSES
from scoring.rules import Mode, RuleSet, RulesInForce
from scoring.shipped import load_rules
from scoring.synthetic import (
    INDICATOR_WEIGHTS,
    REVOKED_NOTE,
    SOURCE_OF_INDICATOR,
    SOURCE_SHARES,
    SOURCES,
    _draw,
    _finding_ids,
    _institutions,
    _references,
    _str,
    _take,
)

__all__ = [
    "OUTCOME_SCALE",
    "PENALTY_INDICATOR",
    "SYNTHETIC_NOTICE",
    "SyntheticHistory",
    "serious_outcomes",
    "synthetic_history",
]

SYNTHETIC_NOTICE = (
    "合成数据（synthetic data）：本数据由 scoring.history 按随机种子生成，机构、信用代码、"
    "认定记录与风险值均为虚构，不反映任何真实机构，不得作为信用评价结果使用、公示或共享。"
    " Synthetic data: generated from a seed by scoring.history; institutions, credit codes, "
    "findings and risks are fictional and must not be used, published or shared as ratings."
)
"""What every report, table or figure built on `synthetic_history` must print with it."""

PENALTY_INDICATOR = "no_penalties"
"""The indicator whose counted findings are administrative penalties (行政处罚)."""

OUTCOME_SCALE = "four"
"""The scale whose lowest grade is a serious outcome: the district's four classes, A–D."""

CLOSED = "closed"

# ---------------------------------------------------------------------------- outcomes


def serious_outcomes(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    rules: RuleSet,
    years: Iterable[int] | None = None,
    *,
    scale: str | None = None,
) -> pd.DataFrame:
    """One row per (institution, year t) rated in t and in t+1, with the outcome of t+1.

    `institutions` and `findings` follow the input contract (as `scoring.inputs.validate`
    normalises it); findings may span several years. `years` are the rating years considered
    (default: every year from the first to the last in which a finding is dated, from the
    year the measure came into force); a row is made for each t with t+1 also in `years`.
    Institutions whose `status` is `closed` are left out, with their findings.

    Columns: `uscc`, `year` (t), `score` and `grade` (t, on `scale`, default the rules'
    default scale), one column per indicator code in force in any t (points lost in t: points
    in force minus points kept; 0 where the indicator is not in force), and `outcome` (1 when
    in t+1 the institution has a counted `no_penalties` finding, any counted veto, or the
    lowest grade of the four-class scale; else 0). Rows are ordered by year, then as the
    institutions are listed; the index is a RangeIndex.
    """
    institutions, findings = _without_closed(institutions, findings)
    chosen = _years(findings, rules) if years is None else sorted(set(years))
    pairs = [t for t in chosen if t + 1 in chosen]
    forces = {t: rules.in_force(t, scale) for t in pairs}
    codes = list(dict.fromkeys(i.code for f in forces.values() for i in f.indicators))

    parts = [
        _rows(institutions, findings, forces[t], rules.in_force(t + 1, OUTCOME_SCALE), codes)
        for t in pairs
    ]
    if not parts:
        return _empty(codes)
    return pd.concat(parts, ignore_index=True)


def _without_closed(
    institutions: pd.DataFrame, findings: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    if "status" not in institutions.columns:
        return institutions, findings
    closed = institutions["status"].eq(CLOSED).to_numpy(dtype=bool)
    if not closed.any():
        return institutions, findings
    gone = institutions["uscc"][closed]
    institutions = institutions[~closed].reset_index(drop=True)
    findings = findings[~findings["uscc"].isin(gone).to_numpy(dtype=bool)]
    return institutions, findings.reset_index(drop=True)


def _years(findings: pd.DataFrame, rules: RuleSet) -> list[int]:
    """Every year from the first to the last with a dated finding, the measure in force."""
    if findings.empty:
        return []
    dated = findings["occurred_on"].to_numpy().astype("datetime64[Y]").astype(np.int64) + 1970
    first = max(int(dated.min()), rules.info.issued_on.year)
    return list(range(first, int(dated.max()) + 1))


def _rows(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    force: RulesInForce,
    next_force: RulesInForce,
    codes: list[str],
) -> pd.DataFrame:
    now = rate(institutions, findings, force)
    later = rate(institutions, findings, next_force)

    penalties = counted(findings, next_force.year, next_force.counts_from) & findings[
        "indicator"
    ].eq(PENALTY_INDICATOR).to_numpy(dtype=bool)
    penalised = institutions["uscc"].isin(findings["uscc"][penalties]).to_numpy(dtype=bool)
    lowest = later["grade"].eq(next_force.lowest_grade.grade).to_numpy(dtype=bool)
    outcome = penalised | later["vetoed"].to_numpy(dtype=bool) | lowest

    n = len(institutions)
    lost = {code: np.zeros(n, dtype=np.int64) for code in codes}
    for indicator in force.indicators:
        kept = now[indicator.code].to_numpy(dtype=np.int64)
        lost[indicator.code] = indicator.points - kept
    return pd.DataFrame(
        {
            "uscc": now["uscc"].array,
            "year": np.full(n, force.year, dtype=np.int64),
            "score": now["score"].to_numpy(dtype=np.int64),
            "grade": now["grade"].astype("str").array,
            **lost,
            "outcome": outcome.astype(np.int64),
        }
    )


def _empty(codes: list[str]) -> pd.DataFrame:
    columns: dict[str, Any] = {
        "uscc": pd.array([], dtype="str"),
        "year": np.array([], dtype=np.int64),
        "score": np.array([], dtype=np.int64),
        "grade": pd.array([], dtype="str"),
    }
    columns.update({code: np.array([], dtype=np.int64) for code in codes})
    columns["outcome"] = np.array([], dtype=np.int64)
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------- synthetic history

# How the hidden risk drives the findings. Risk is a standard normal draw per institution;
# each year adds an AR(1) fluctuation, so an institution's years resemble one another.
PERSISTENCE = 0.6  # AR(1) coefficient of the yearly fluctuation
FLUCTUATION = 0.5  # standard deviation of the yearly fluctuation
FINDINGS_LOG_RATE = -0.6  # log of the yearly findings rate at risk 0 (a full year)
FINDINGS_RISK_SLOPE = 1.3  # how fast the findings rate grows with risk
HEAVY_LOGIT = (-2.5, 0.9)  # share of findings drawn by points (heavier indicators), by risk
COUNT_P = (0.7, -0.12, 0.3, 0.9)  # geometric p of counts: base, slope in risk, lower, upper
HABIT_SHARE = 0.4  # findings that repeat one of the institution's two habitual indicators
PENALTY_LOGIT = (-4.6, 1.1)  # yearly chance of an administrative penalty, by risk
VETO_LOGIT = (-9.0, 1.3)  # yearly chance of a veto, by risk
HISTORY_REVOKED_SHARE = 0.02


@dataclass(frozen=True, eq=False)  # frames do not compare with ==
class SyntheticHistory:
    """A synthetic district over several years (合成数据：see `SYNTHETIC_NOTICE`).

    `institutions` and `findings` are in the input contract, normalised as
    `scoring.inputs.validate` returns them, so they may be rated, validated or written to
    CSV/Parquet for `--institutions PATH --findings PATH`. `risk` and `risk_by_year` are the
    hidden truth that drew them and are NOT part of the input contract: `risk` is the latent
    standard-normal draw of each institution (row i = institution i, named by `uscc`), and
    `risk_by_year` the risk in force each year (it adds a persistent yearly fluctuation;
    one column per year). All of it is synthetic: fictional institutions, codes and findings.
    """

    institutions: pd.DataFrame
    findings: pd.DataFrame
    risk: pd.Series
    risk_by_year: pd.DataFrame
    years: tuple[int, ...]
    seed: int
    today: dt.date

    def summary(self) -> str:
        """A short plain-text report, led by `SYNTHETIC_NOTICE` (synthetic data)."""
        per_year = self.findings["occurred_on"].dt.year.value_counts().sort_index()
        lines = [
            SYNTHETIC_NOTICE,
            f"seed {self.seed}, {len(self.institutions):,} institutions, years "
            f"{', '.join(map(str, self.years))}, dates up to {self.today.isoformat()}",
            *(f"  {year}: {count:,} findings" for year, count in per_year.items()),
        ]
        return "\n".join(lines)


def synthetic_history(
    institutions: int = 2000,
    years: Iterable[int] = (2023, 2024, 2025, 2026),
    *,
    seed: int = 0,
    rules: RuleSet | None = None,
    today: dt.date | None = None,
) -> SyntheticHistory:
    """A seeded synthetic district of `institutions` over `years` (合成数据, synthetic data).

    Each year must be one the measure is in force in (`rules`, default the shipped measure)
    and must have started by `today` (default `datetime.date.today()`): no finding is dated
    after `today`, a year not yet over gets findings only up to it, and the measure's first
    year only from the day it came into force. Riskier institutions (by the hidden `risk`)
    get more findings, heavier ones (larger counts, costlier indicators) and, with a chance
    growing steeply with risk, administrative penalties (`no_penalties`) and, rarely, vetoes;
    the yearly risk persists, so a year's findings foresee the next year's. About 2% of
    findings are revoked. The same arguments always give equal frames.
    """
    n = institutions
    if n < 1:
        raise ValueError("need at least one institution")
    chosen = tuple(sorted(set(years)))
    if not chosen:
        raise ValueError("need at least one year")
    rules = load_rules() if rules is None else rules
    today = dt.date.today() if today is None else today
    forces = [rules.in_force(year) for year in chosen]  # RulesError for a year not in force
    windows = [_window(year, rules.info.issued_on, today) for year in chosen]

    rng = np.random.default_rng(seed)
    frame, codes, district = _institutions(rng, n)
    risk = rng.standard_normal(n)
    fluctuation = np.zeros(n)
    yearly: dict[int, npt.NDArray[np.float64]] = {}
    for year in chosen:
        step = rng.standard_normal(n) * np.sqrt(1 - PERSISTENCE**2)
        # The first year's fluctuation is drawn from the stationary law (standard deviation 1).
        fluctuation = (
            PERSISTENCE * fluctuation + step if yearly else step / np.sqrt(1 - PERSISTENCE**2)
        )
        yearly[year] = risk + FLUCTUATION * fluctuation

    all_codes = [i.code for i in forces[-1].indicators]
    habits = _draw(rng, [_weight(force_code, forces[-1]) for force_code in all_codes], 2 * n)
    habit_codes = (all_codes, habits.reshape(n, 2))

    parts = [
        _year_findings(rng, force, window, yearly[force.year], codes, district, habit_codes)
        for force, window in zip(forces, windows, strict=True)
    ]
    findings = pd.concat(parts, ignore_index=True)
    return SyntheticHistory(
        institutions=frame,
        findings=findings,
        risk=pd.Series(risk, name="risk", index=pd.Index(frame["uscc"], name="uscc")),
        risk_by_year=pd.DataFrame(yearly, index=pd.Index(frame["uscc"], name="uscc")),
        years=chosen,
        seed=seed,
        today=today,
    )


def _window(year: int, in_force: dt.date, today: dt.date) -> tuple[dt.date, dt.date]:
    first = max(dt.date(year, 1, 1), in_force)
    last = min(dt.date(year, 12, 31), today)
    if last < first:
        raise ValueError(f"{year} has not started by {today.isoformat()}: no findings to make")
    return first, last


def _weight(code: str, force: RulesInForce) -> float:
    """How often an indicator is found at all (penalties are drawn apart, by risk)."""
    if code == PENALTY_INDICATOR:
        return 0.0
    mode = next(i.rule.mode for i in force.indicators if i.code == code)
    return INDICATOR_WEIGHTS.get(code, 1.0 if mode is Mode.PER else 0.3)


def _logistic(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-x))


def _year_findings(
    rng: np.random.Generator,
    force: RulesInForce,
    window: tuple[dt.date, dt.date],
    risk: npt.NDArray[np.float64],
    uscc: Any,
    district: npt.NDArray[np.intp],
    habits: tuple[list[str], npt.NDArray[np.intp]],
) -> pd.DataFrame:
    year = force.year
    first, last = window
    share = ((last - first).days + 1) / ((dt.date(year, 12, 31) - dt.date(year, 1, 1)).days + 1)
    n = len(risk)

    # Ordinary findings: how many per institution, then which indicator and how many units.
    rate_ = np.exp(FINDINGS_LOG_RATE + FINDINGS_RISK_SLOPE * risk) * share
    ordinary = rng.poisson(rate_)
    who = np.repeat(np.arange(n), ordinary)
    codes = [i.code for i in force.indicators]
    usual = _draw(rng, [_weight(c, force) for c in codes], who.size)
    heavy = _draw(
        rng,
        [0.0 if i.code == PENALTY_INDICATOR else float(i.points) for i in force.indicators],
        who.size,
    )
    heavier = rng.random(who.size) < _logistic(HEAVY_LOGIT[0] + HEAVY_LOGIT[1] * risk[who])
    what = np.where(heavier, heavy, usual)
    habitual = rng.random(who.size) < HABIT_SHARE
    habit_list, habit_of = habits
    lookup = np.array([codes.index(c) if c in codes else -1 for c in habit_list], dtype=np.intp)
    habit = lookup[habit_of[who, rng.integers(0, 2, who.size)]]
    what = np.where(habitual & (habit >= 0), habit, what)
    base, slope, low, high = COUNT_P
    count = rng.geometric(np.clip(base + slope * risk[who], low, high)).astype(np.int64)

    # Penalties and vetoes: a chance per institution and year, growing steeply with risk.
    # Both are drawn whatever the rules hold, so a seed gives the same draws for any measure.
    vetoes = [v.code for v in force.vetoes]
    all_codes = [*codes, *vetoes]
    penalty_at = codes.index(PENALTY_INDICATOR) if PENALTY_INDICATOR in codes else -1
    penalty_chance = _logistic(PENALTY_LOGIT[0] + PENALTY_LOGIT[1] * risk) * share
    veto_chance = _logistic(VETO_LOGIT[0] + VETO_LOGIT[1] * risk) * share
    penalised = np.flatnonzero(rng.random(n) < penalty_chance)
    vetoed = np.flatnonzero(rng.random(n) < veto_chance)
    veto_at = len(codes) + rng.integers(0, max(len(vetoes), 1), vetoed.size)
    if penalty_at < 0:
        penalised = penalised[:0]
    if not vetoes:
        vetoed, veto_at = vetoed[:0], veto_at[:0]
    who = np.concatenate([who, penalised, vetoed])
    what = np.concatenate([what, np.full(penalised.size, penalty_at), veto_at]).astype(np.intp)
    count = np.concatenate([count, np.ones(penalised.size + vetoed.size, dtype=np.int64)])
    single = np.array([i.rule.mode is Mode.ALL for i in force.indicators] + [True] * len(vetoes))
    count[single[what]] = 1

    # When: uniformly over the window, records kept in date order.
    start = np.datetime64(f"{year - 1:04d}-01-01")  # `_references` counts days from here
    offset = (np.datetime64(first.isoformat()) - start).astype(np.int64)
    span = (last - first).days + 1
    day = (offset + rng.integers(0, span, who.size)).astype(np.int16)
    order = np.argsort(day, kind="stable")
    who, what, count, day = who[order], what[order], count[order], day[order]

    forced = np.full(len(all_codes), -1, dtype=np.intp)
    for code, src in SOURCE_OF_INDICATOR.items():
        if code in all_codes:
            forced[all_codes.index(code)] = SOURCES.index(src)
    source = forced[what]
    source = np.where(source >= 0, source, _draw(rng, SOURCE_SHARES, who.size))
    revoked = (rng.random(who.size) < HISTORY_REVOKED_SHARE).astype(np.intp)
    m = who.size
    in_year = np.ones(m, dtype=np.intp)  # `_finding_ids` and `_references`: 1 = `year`
    occurred = (start + day.astype("timedelta64[D]")).astype("datetime64[us]")
    return pd.DataFrame(
        {
            "finding_id": _str(_finding_ids(year, in_year)),
            "uscc": _str(uscc.take(pa.array(who))),
            "indicator": _str(_take(np.array(all_codes), what)),
            "occurred_on": occurred,
            "count": count,
            "source": _str(_take(np.array(SOURCES), source)),
            "reference": _str(_references(rng, source, district[who], in_year, year, day, start)),
            "status": _str(_take(np.array(FINDING_STATUSES), revoked)),
            "note": _str(_take(np.array(["", REVOKED_NOTE]), revoked)),
        }
    )
