"""The calibrated risk of a serious outcome next year, for ratings read from the service.

`credit-rating calibrate --out DIR` writes `DIR/calibration.joblib` (the fitted estimators)
and `DIR/calibration.json` (its metadata). When `CREDIT_CALIBRATION_DIR` names such a
directory, `load_risk` reads it once at start-up and refuses it, with a message saying why,
when:

- the metadata is missing or unreadable, or names another file than `calibration.joblib`;
- the artifact's SHA-256 differs from the metadata's `sha256` (checked on the bytes BEFORE
  unpickling: a joblib file can run code, so nothing else is ever loaded);
- it was fitted under another rule set: the metadata's `rules_hash` must be the content hash
  of the rules in force, on the four-class scale, in the last year of its calibration
  (`held_out_year` + 1), exactly as `scoring.calibration_report.calibrate` computed it.

The grades stay those of the rules in force; the risk is extra information, computed from
the stored score at read time.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from scoring.calibration import ScoreCalibrator
from scoring.errors import ScoringError
from scoring.history import OUTCOME_SCALE
from scoring.rules import RuleSet
from service.core.errors import ServiceError

ARTIFACT = "calibration.joblib"
METADATA = "calibration.json"
ALPHA = 0.05  # the interval's level is 1 - ALPHA


class CalibrationRefused(ServiceError):
    """The configured calibration cannot be used; the message says why."""


@dataclass(frozen=True)
class Risk:
    risk: float
    lower: float
    upper: float


@dataclass(frozen=True)
class RiskModel:
    """A checked calibrator: score → probability of a serious outcome next year."""

    calibrator: ScoreCalibrator
    rules_hash: str
    sha256: str

    def of(self, scores: Sequence[int | float]) -> list[Risk]:
        """The risk and its interval for each score. The interval is a bootstrap percentile
        interval, widened if needed so that it always contains the risk itself."""
        if not scores:
            return []
        x = np.asarray(scores, dtype=np.float64)
        p = self.calibrator.predict_proba(x)[:, 1]
        bounds = self.calibrator.predict_interval(x, alpha=ALPHA)
        return [
            Risk(risk=float(r), lower=float(min(lo, r)), upper=float(max(hi, r)))
            for r, (lo, hi) in zip(p, bounds, strict=True)
        ]


def load_risk(directory: Path, rules: RuleSet) -> RiskModel:
    """The calibrator in `directory`, checked against its metadata and `rules`; raises
    CalibrationRefused (see the module docstring)."""
    where = f"CREDIT_CALIBRATION_DIR={directory}"
    try:
        metadata = json.loads((directory / METADATA).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CalibrationRefused(
            f"{where}: cannot read {METADATA}: {exc.strerror or exc}"
        ) from None
    except ValueError:
        raise CalibrationRefused(f"{where}: {METADATA} is not valid JSON") from None
    if not isinstance(metadata, dict):
        raise CalibrationRefused(f"{where}: {METADATA} is not a JSON object")
    expected = metadata.get("sha256")
    fitted_under = metadata.get("rules_hash")
    held_out = metadata.get("held_out_year")
    if metadata.get("artifact", ARTIFACT) != ARTIFACT:
        raise CalibrationRefused(f"{where}: {METADATA} names another artifact than {ARTIFACT}")
    if not isinstance(expected, str) or not isinstance(fitted_under, str):
        raise CalibrationRefused(f"{where}: {METADATA} has no sha256 or rules_hash")
    if not isinstance(held_out, int) or isinstance(held_out, bool):
        raise CalibrationRefused(f"{where}: {METADATA} has no held_out_year")
    last = held_out + 1
    try:
        in_force = rules.in_force(last, OUTCOME_SCALE).content_hash
    except (
        ScoringError,
        ValueError,
    ) as exc:  # RulesError: no rules in force that year, or no such scale
        raise CalibrationRefused(
            f"{where}: no {OUTCOME_SCALE}-class rules in force in {last}: {exc}"
        ) from None
    if fitted_under != in_force:
        raise CalibrationRefused(
            f"{where}: the calibration was fitted under other rules (rules_hash"
            f" {fitted_under[:12]}…, the rules in force in {last} on the {OUTCOME_SCALE}-class"
            f" scale are {in_force[:12]}…): calibrate again under the rules in force"
        )
    try:
        content = (directory / ARTIFACT).read_bytes()
    except OSError as exc:
        raise CalibrationRefused(
            f"{where}: cannot read {ARTIFACT}: {exc.strerror or exc}"
        ) from None
    digest = hashlib.sha256(content).hexdigest()
    if digest != expected:
        raise CalibrationRefused(
            f"{where}: {ARTIFACT} does not match its metadata (sha256 {digest[:12]}…,"
            f" expected {expected[:12]}…): refused, it is not loaded"
        )
    try:  # only now, and from the very bytes that were checked
        loaded: Any = joblib.load(io.BytesIO(content))
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise CalibrationRefused(f"{where}: cannot load {ARTIFACT}: {exc}") from None
    calibrator = loaded.get("calibrator") if isinstance(loaded, dict) else None
    if not isinstance(calibrator, ScoreCalibrator):
        raise CalibrationRefused(f"{where}: {ARTIFACT} holds no ScoreCalibrator")
    return RiskModel(calibrator=calibrator, rules_hash=fitted_under, sha256=digest)
