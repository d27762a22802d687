"""A calibration report over several years, and a candidate rule set built from it (issue 10).

Pure: frames and rules in, a report (plain data, JSON-ready) and fitted estimators out; the
candidate rule set is built as the YAML documents of a rules directory (file name → data),
checked with `scoring.rules.parse_rules`. Reading files and writing the artifact belong to the
command line (`service/cli/calibrate.py`).

Method: `serious_outcomes` gives one row per institution and year pair (t, t+1). The pairs of
every year but the last are the training set; the last pair is held out. On the training set
a `ScoreCalibrator` maps the rule score to the chance of a serious outcome, a
`NonNegativeLogistic` over points lost per indicator gives the proposed points
(`proposed_points`, weighted by the points in force) and `propose_cutoffs` the proposed bands
of the four-class scale. The held-out pair is scored with the calibrator: AUC, KS, Brier score
against the base-rate forecast (the training rate), a reliability table and the outcome rate
per grade with Wilson intervals. The PSI of the score is taken between consecutive years.

The proposed cut-offs are fitted on the scores of the rules in use, not on scores recomputed
with the proposed points: read them as a proposal for the current points.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scoring.calibration import (
    MIN_INSTITUTIONS,
    CalibrationError,
    NonNegativeLogistic,
    ScoreCalibrator,
    auc,
    brier,
    ks,
    propose_cutoffs,
    proposed_points,
    psi,
    psi_band,
    reliability_table,
    wilson_interval,
)
from scoring.engine import rate
from scoring.errors import RulesError
from scoring.history import OUTCOME_SCALE, SYNTHETIC_NOTICE, serious_outcomes
from scoring.rules import RuleSet, parse_rules

__all__ = ["Calibration", "calibrate", "candidate_documents", "parse_years"]

CANDIDATE_MARK = "status: candidate"
"""How a candidate rule set is marked: `RulesetInfo` has no status field, so the mark is in
the note of the change it adds (and in its version, which ends in `-candidate`)."""


@dataclass(frozen=True, eq=False)
class Calibration:
    """A report (plain data, JSON-ready) and the estimators fitted for it."""

    report: dict[str, Any]
    calibrator: ScoreCalibrator
    logistic: NonNegativeLogistic
    codes: tuple[str, ...]
    training_years: tuple[int, ...]
    held_out_year: int


def parse_years(text: str) -> tuple[int, ...]:
    """'2023-2026' or '2023,2024,2025' → the years, sorted; CalibrationError otherwise."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-", 1))
            return tuple(range(first, last + 1))
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise CalibrationError(
            f"years must look like 2023-2026 or 2023,2024,2025, got {text!r}"
        ) from None


def _check_years(years: tuple[int, ...]) -> None:
    if len(years) < 3:
        shown = ", ".join(map(str, years)) or "none"
        raise CalibrationError(
            f"calibration needs at least three consecutive years (two year pairs to train on "
            f"and hold out, e.g. --years 2023-2026), got {len(years)}: {shown}"
        )
    if list(years) != list(range(years[0], years[-1] + 1)):
        raise CalibrationError(f"years must be consecutive, got {', '.join(map(str, years))}")


def _check_missing(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    """NaN (or a missing date or code) where the rating needs a value: CalibrationError."""
    for column in columns:
        if column not in frame.columns:
            raise CalibrationError(f"{name} have no column {column!r}")
        missing = int(frame[column].isna().sum())
        if missing:
            raise CalibrationError(
                f"{name} have NaN or missing values in {column!r} ({missing} row(s))"
            )


def _open(institutions: pd.DataFrame, findings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Without closed institutions and their findings (as `serious_outcomes` leaves them out)."""
    if "status" not in institutions.columns:
        return institutions, findings
    keep = ~institutions["status"].eq("closed").to_numpy(dtype=bool)
    kept = institutions[keep].reset_index(drop=True)
    ours = findings["uscc"].isin(kept["uscc"]).to_numpy(dtype=bool)
    return kept, findings[ours].reset_index(drop=True)


def calibrate(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    rules: RuleSet,
    years: Iterable[int],
    *,
    seed: int = 0,
    synthetic: bool = False,
    n_bootstraps: int = 100,
) -> Calibration:
    """Train on every year pair but the last, hold out the last; see the module docstring.

    Raises CalibrationError (a ScoringError) for fewer than three years, fewer than
    `MIN_INSTITUTIONS` open institutions, NaN in the rating, or one class only."""
    chosen = tuple(sorted(set(years)))
    _check_years(chosen)
    _check_missing(findings, ("uscc", "indicator", "occurred_on", "count"), "findings")
    _check_missing(institutions, ("uscc",), "institutions")
    # In credit-code order: the cross-validation folds follow the rows, and the same records
    # must give the same report whether they come from files or from the database.
    institutions = institutions.sort_values("uscc", ignore_index=True)
    open_, open_findings = _open(institutions, findings)
    if len(open_) < MIN_INSTITUTIONS:
        raise CalibrationError(
            f"too few institutions: {len(open_)} open, at least {MIN_INSTITUTIONS} are needed"
        )
    forces = {year: rules.in_force(year, OUTCOME_SCALE) for year in chosen}  # RulesError early
    rows = serious_outcomes(institutions, findings, rules, chosen, scale=OUTCOME_SCALE)
    last = chosen[-1]
    held = chosen[-2]
    codes = tuple(i.code for i in forces[last].indicators)
    missing = [c for c in codes if c not in rows.columns]
    if missing:
        raise CalibrationError(f"indicators of {last} not rated in earlier years: {missing}")
    numeric = rows[["score", *codes, "outcome"]]
    if numeric.isna().to_numpy().any():
        raise CalibrationError("the rating has NaN values: check the input files")

    train = rows[rows["year"].to_numpy() < held]
    test = rows[rows["year"].to_numpy() == held]
    training_years = tuple(int(y) for y in chosen[:-2])
    for name, part in (("training", train), (f"held-out year {held}", test)):
        y = part["outcome"].to_numpy()
        if y.min() == y.max():
            raise CalibrationError(
                f"one class only in the {name} rows: every outcome is {int(y[0])}; both serious "
                "(1) and no serious (0) outcomes are needed"
            )

    y_train = train["outcome"].to_numpy(dtype=np.int64)
    y_test = test["outcome"].to_numpy(dtype=np.int64)
    calibrator = ScoreCalibrator(random_state=seed, n_bootstraps=n_bootstraps)
    calibrator.fit(train["score"].to_numpy(dtype=np.float64), y_train)
    prob = calibrator.predict_proba(test["score"].to_numpy(dtype=np.float64))[:, 1]
    base_rate = float(y_train.mean())

    logistic = NonNegativeLogistic(alpha=1e-4)
    logistic.fit(train[list(codes)].to_numpy(dtype=np.float64), y_train)
    current = [i.points for i in forces[last].indicators]
    weights = proposed_points(
        logistic.coef_[0], codes, total=rules.info.total_points, minimum=1, current_points=current
    )
    grades = [b.grade for b in forces[last].bands]
    bands = propose_cutoffs(train["score"].to_numpy(), y_train, grades)

    report: dict[str, Any] = {
        "synthetic": synthetic,
        **({"notice": SYNTHETIC_NOTICE} if synthetic else {}),
        "years": list(chosen),
        "training_years": list(training_years),
        "held_out_year": held,
        "outcome_year": last,
        "rules_version": rules.version,
        "rules_hash": forces[last].content_hash,
        "scale": OUTCOME_SCALE,
        "institutions": len(open_),
        "training_rows": len(train),
        "held_out_rows": len(test),
        "training_rate": base_rate,
        "held_out_rate": float(y_test.mean()),
        "method": calibrator.method_,
        "auc": auc(prob, y_test),
        "auc_score": auc(test["score"].to_numpy(), y_test, higher_is_riskier=False),
        "ks": ks(prob, y_test),
        "brier": brier(prob, y_test),
        "brier_baseline": brier(np.full(y_test.size, base_rate), y_test),
        "reliability": reliability_table(prob, y_test).to_dict("records"),
        "grade_rates": _grade_rates(test, grades),
        "psi": _psi(open_, open_findings, rules, chosen),
        "weights": weights,
        "current_points": dict(zip(codes, current, strict=True)),
        "cutoffs": [
            {
                "grade": b.grade,
                "min": b.min,
                "max": b.max,
                "count": b.count,
                "events": b.events,
                "rate": b.rate,
                "lower": b.lower,
                "upper": b.upper,
            }
            for b in bands
        ],
    }
    return Calibration(report, calibrator, logistic, codes, training_years, held)


def _grade_rates(test: pd.DataFrame, grades: list[str]) -> list[dict[str, Any]]:
    out = []
    for grade in grades:
        y = test["outcome"].to_numpy()[test["grade"].to_numpy() == grade]
        n, k = int(y.size), int(y.sum())
        lower, upper = wilson_interval(k, n) if n else (0.0, 1.0)
        out.append(
            {
                "grade": grade,
                "count": n,
                "events": k,
                "rate": k / n if n else None,
                "lower": lower,
                "upper": upper,
            }
        )
    return out


def _psi(
    institutions: pd.DataFrame, findings: pd.DataFrame, rules: RuleSet, years: tuple[int, ...]
) -> list[dict[str, Any]]:
    scores = {
        y: rate(institutions, findings, rules.in_force(y, OUTCOME_SCALE))["score"].to_numpy()
        for y in years
    }
    out = []
    for before, after in itertools.pairwise(years):
        value = psi(scores[before], scores[after])
        out.append({"from": before, "to": after, "value": value, "band": psi_band(value)})
    return out


# ------------------------------------------------------------------------ candidate rules


def candidate_documents(
    documents: Mapping[str, Any], report: Mapping[str, Any], *, scale: str = OUTCOME_SCALE
) -> dict[str, Any]:
    """The YAML documents of a rules directory with the report's proposals added as values
    dated the day after its last year: the proposed points (a per-unit deduction above the
    new points is lowered to them, as the rules require), the proposed bands of `scale`, and
    `ruleset.yaml`'s version bumped with a change noted `status: candidate`. Checked with
    `parse_rules`: CalibrationError if the result is not a valid rule set."""
    docs = copy.deepcopy(dict(documents))
    day = dt.date(int(report["outcome_year"]) + 1, 1, 1)
    weights: Mapping[str, int] = report["weights"]

    for indicator in docs["indicators.yaml"]["indicators"]:
        code = indicator["code"]
        if code not in weights:
            continue
        new = int(weights[code])
        indicator["points"] = {**indicator["points"], day: new}
        deduction = indicator.get("deduction")
        if deduction:
            before = deduction[max(d for d in deduction if d <= day)]
            if before > new:
                indicator["deduction"] = {**deduction, day: new}

    for item in docs["scales.yaml"]["scales"]:
        if item["code"] != scale:
            continue
        old = item["bands"][max(d for d in item["bands"] if d <= day)]
        labels = {band["grade"]: band["label"] for band in old}
        item["bands"] = {
            **item["bands"],
            day: [
                {"grade": c["grade"], "min": c["min"], "max": c["max"], "label": labels[c["grade"]]}
                for c in report["cutoffs"]
            ],
        }

    info = docs["ruleset.yaml"]
    version = _bumped(str(info["version"]))
    info["version"] = version
    info["changes"] = [
        *info.get("changes", []),
        {
            "version": version,
            "in_force_from": day,
            "note": (
                f"{CANDIDATE_MARK}（候选，未生效，需审定）：由 credit-rating calibrate 按 "
                f"{report['years'][0]}–{report['outcome_year']} 年的认定记录提出的分值与"
                f" {scale} 等级分界，自 {day.isoformat()} 起。训练年份 "
                f"{', '.join(map(str, report['training_years']))}，留出年份 "
                f"{report['held_out_year']}；AUC {report['auc']:.3f}，Brier "
                f"{report['brier']:.4f}（基准 {report['brier_baseline']:.4f}）。"
                + ("合成数据，不得作为规则使用。" if report.get("synthetic") else "")
            ),
        },
    ]
    try:
        parse_rules(docs)
    except RulesError as exc:
        raise CalibrationError(f"the candidate rule set is not valid: {exc}") from None
    return docs


def _bumped(version: str) -> str:
    """'2022.12.0' → '2022.12.1-candidate' (the last number raised, the candidate mark added)."""
    base = version.removesuffix("-candidate")
    head, _, last = base.rpartition(".")
    if head and last.isdigit():
        return f"{head}.{int(last) + 1}-candidate"
    return f"{base}.1-candidate"
