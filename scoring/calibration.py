"""Calibration of the rule score against what happened next (issue 10, part 2).

The outcome predicted is a *serious outcome* in year t+1 for an institution rated in year t
(see docs/measure.md): a binary label, 1 = serious outcome. Everything here is pure: numpy
arrays or pandas frames in, numbers, arrays and frames out; no files, no service.

- `ScoreCalibrator`: the rule score (0–1000, one feature) → probability of a serious outcome,
  non-increasing in the score; isotonic or sigmoid, chosen by cross-validated Brier score; a
  bootstrap interval for each probability.
- `NonNegativeLogistic`: a logistic model over points lost per indicator, weights constrained
  to be ≥ 0 while fitting; `proposed_points` turns its weights into an allocation of 1000.
- `propose_cutoffs`: grade bands over 0–1000 whose outcome rates rise strictly from A down.
- Helpers: `auc`, `ks`, `brier`, `reliability_table`, `wilson_interval`, `psi`, `psi_band`.

Both estimators follow scikit-learn's conventions (clone, get_params, pickling/joblib) and
pass `sklearn.utils.estimator_checks`. Bad input raises `CalibrationError`, a `ValueError`
(and a `scoring.ScoringError`) whose message names the problem.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from scipy import optimize, special, stats
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from scoring.errors import ScoringError

__all__ = [
    "MIN_INSTITUTIONS",
    "Band",
    "CalibrationError",
    "NonNegativeLogistic",
    "ScoreCalibrator",
    "auc",
    "brier",
    "ks",
    "propose_cutoffs",
    "proposed_points",
    "psi",
    "psi_band",
    "reliability_table",
    "wilson_interval",
]

# Below this many rated institutions a calibration says more about noise than about risk.
MIN_INSTITUTIONS = 50
SCORE_MAX = 1000

FloatArray = npt.NDArray[np.float64]


class CalibrationError(ScoringError, ValueError):
    """Input a calibration cannot use; the message names the problem."""


# --------------------------------------------------------------------------------------------
# Input checks shared by the helpers


def _as_vector(values: Any, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{name} must be numbers: {exc}") from None
    if arr.ndim != 1:
        raise CalibrationError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise CalibrationError(f"{name} is empty")
    if np.isnan(arr).any():
        raise CalibrationError(f"{name} contains NaN ({int(np.isnan(arr).sum())} value(s))")
    if np.isinf(arr).any():
        raise CalibrationError(f"{name} contains infinite values")
    return arr


def _as_outcome(values: Any, name: str = "outcome") -> npt.NDArray[np.int64]:
    arr = _as_vector(values, name)
    if not np.isin(arr, (0.0, 1.0)).all():
        bad = np.unique(arr[~np.isin(arr, (0.0, 1.0))])[:5]
        raise CalibrationError(f"{name} must be 0 or 1 (1 = serious outcome), got {bad.tolist()}")
    return arr.astype(np.int64)


def _same_length(a: npt.NDArray[Any], b: npt.NDArray[Any], name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise CalibrationError(
            f"mismatched lengths: {name_a} has {a.shape[0]} value(s), {name_b} has {b.shape[0]}"
        )


def _both_classes(outcome: npt.NDArray[np.int64]) -> None:
    if outcome.min() == outcome.max():
        raise CalibrationError(
            f"one class only: every outcome is {int(outcome[0])}; "
            "both serious (1) and no serious (0) outcomes are needed"
        )


def _enough(n: int, minimum: int) -> None:
    if n < minimum:
        raise CalibrationError(
            f"too few institutions: {n} sample(s), at least {minimum} are needed"
        )


# --------------------------------------------------------------------------------------------
# Metrics


def brier(prob: Any, outcome: Any) -> float:
    """Mean squared difference between predicted probability and outcome (0/1); lower is
    better. The base-rate forecast scores p̄(1 − p̄)."""
    p = _as_vector(prob, "prob")
    y = _as_outcome(outcome)
    _same_length(p, y, "prob", "outcome")
    if ((p < 0) | (p > 1)).any():
        raise CalibrationError("prob must lie in [0, 1]")
    return float(np.mean((p - y) ** 2))


def auc(values: Any, outcome: Any, *, higher_is_riskier: bool = True) -> float:
    """Area under the ROC curve: the chance that a random institution with a serious outcome
    ranks riskier than a random one without (ties count half).

    `values` are probabilities (higher = riskier) by default; pass rule scores with
    `higher_is_riskier=False` (a high score means low risk)."""
    v = _as_vector(values, "values")
    y = _as_outcome(outcome)
    _same_length(v, y, "values", "outcome")
    _both_classes(y)
    return float(roc_auc_score(y, v if higher_is_riskier else -v))


def ks(values: Any, outcome: Any) -> float:
    """Kolmogorov–Smirnov statistic: the largest gap between the empirical distributions of
    `values` among institutions with and without a serious outcome (0 to 1; symmetric)."""
    v = _as_vector(values, "values")
    y = _as_outcome(outcome)
    _same_length(v, y, "values", "outcome")
    _both_classes(y)
    return float(stats.ks_2samp(v[y == 1], v[y == 0]).statistic)


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion `successes`/`n` at level 1 − `alpha`."""
    if isinstance(successes, bool) or isinstance(n, bool):
        raise CalibrationError("successes and n must be whole numbers, not booleans")
    if int(successes) != successes or int(n) != n:
        raise CalibrationError(f"successes and n must be whole numbers, got {successes}, {n}")
    k, m = int(successes), int(n)
    if m <= 0:
        raise CalibrationError(f"n must be positive, got {m}")
    if not 0 <= k <= m:
        raise CalibrationError(f"successes must lie in 0..n, got {k} of {m}")
    _check_alpha(alpha)
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = k / m
    denom = 1 + z * z / m
    centre = (p + z * z / (2 * m)) / denom
    half = z * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / denom
    lower = 0.0 if k == 0 else max(0.0, centre - half)
    upper = 1.0 if k == m else min(1.0, centre + half)
    return lower, upper


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise CalibrationError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")


def reliability_table(prob: Any, outcome: Any, bins: int = 10) -> pd.DataFrame:
    """Predicted against observed, by equal-width bins of predicted probability on [0, 1].

    Columns: bin (0-based), lower, upper (the bin's edges), mean_predicted, observed_rate,
    count. Bins no prediction fell in are left out; a probability of exactly 1 is in the
    last bin."""
    p = _as_vector(prob, "prob")
    y = _as_outcome(outcome)
    _same_length(p, y, "prob", "outcome")
    if ((p < 0) | (p > 1)).any():
        raise CalibrationError("prob must lie in [0, 1]")
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise CalibrationError(f"bins must be a positive whole number, got {bins!r}")
    k = int(bins)
    index = np.minimum((p * k).astype(np.int64), k - 1)
    rows = []
    for b in np.unique(index):
        inside = index == b
        rows.append(
            {
                "bin": int(b),
                "lower": b / k,
                "upper": (b + 1) / k,
                "mean_predicted": float(p[inside].mean()),
                "observed_rate": float(y[inside].mean()),
                "count": int(inside.sum()),
            }
        )
    return pd.DataFrame(
        rows, columns=["bin", "lower", "upper", "mean_predicted", "observed_rate", "count"]
    )


# Share of a bin's population floored at this before taking logarithms (an empty bin would
# make the index infinite).
_PSI_FLOOR = 1e-4


def psi(expected_scores: Any, actual_scores: Any, bins: int = 10) -> float:
    """Population stability index of `actual_scores` against `expected_scores`.

    Bins are the deciles (for bins=10) of the expected scores, duplicate edges merged (scores
    pile up at 1000); each share is floored at 1e-4. PSI = Σ (a − e) · ln(a / e). Read it
    with `psi_band`: below 0.1 stable, 0.1–0.25 shifting, 0.25 and above shifted."""
    e = _as_vector(expected_scores, "expected_scores")
    a = _as_vector(actual_scores, "actual_scores")
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise CalibrationError(f"bins must be a whole number ≥ 2, got {bins!r}")
    edges = np.unique(np.quantile(e, np.arange(1, bins) / bins))
    e_share = np.bincount(np.searchsorted(edges, e, side="right"), minlength=edges.size + 1)
    a_share = np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1)
    e_p = np.maximum(e_share / e.size, _PSI_FLOOR)
    a_p = np.maximum(a_share / a.size, _PSI_FLOOR)
    return float(np.sum((a_p - e_p) * np.log(a_p / e_p)))


def psi_band(value: float) -> Literal["stable", "shifting", "shifted"]:
    """The usual reading of a PSI: < 0.1 stable, < 0.25 shifting, otherwise shifted."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise CalibrationError(f"a PSI must be a finite number, got {value!r}")
    if value < 0:
        raise CalibrationError(f"a PSI is never negative, got {value}")
    if value < 0.1:
        return "stable"
    if value < 0.25:
        return "shifting"
    return "shifted"


# --------------------------------------------------------------------------------------------
# Non-negative logistic regression (shared by both estimators)


def _fit_logistic(
    X: FloatArray,
    y: npt.NDArray[Any],
    *,
    alpha: float,
    penalize_standardized: bool,
    max_iter: int,
    tol: float,
    weight: FloatArray | None = None,
) -> tuple[FloatArray, float, int]:
    """Minimise mean log loss + alpha/2·‖w‖² subject to w ≥ 0, intercept free (L-BFGS-B).

    Solved on centred, scaled columns for conditioning: a positive scale and a shift keep the
    sign constraint exact. The penalty is on the raw weights unless `penalize_standardized`.
    `weight` (rows standing for several institutions, y then the share with the outcome)
    gives the same fit as the rows repeated."""
    p = X.shape[1]
    share = np.full(X.shape[0], 1.0 / X.shape[0]) if weight is None else weight / weight.sum()
    mean = share @ X
    scale = np.sqrt(share @ (X - mean) ** 2)
    scale[scale == 0] = 1.0
    Z = (X - mean) / scale
    yf = y.astype(np.float64)
    pen = np.full(p, alpha) if penalize_standardized else alpha / scale**2

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        v, b = theta[:p], theta[p]
        z = Z @ v + b
        loss = float(share @ (np.logaddexp(0.0, z) - yf * z)) + 0.5 * float(np.sum(pen * v * v))
        r = share * (special.expit(z) - yf)
        grad = np.empty(p + 1)
        grad[:p] = Z.T @ r + pen * v
        grad[p] = r.sum()
        return loss, grad

    rate = min(max(float(share @ yf), 1e-6), 1 - 1e-6)
    theta0 = np.zeros(p + 1)
    theta0[p] = math.log(rate / (1 - rate))
    result = optimize.minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * p + [(None, None)],
        options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15},
    )
    if not result.success:
        warnings.warn(
            f"the logistic fit did not converge: {result.message}",
            ConvergenceWarning,
            stacklevel=3,
        )
    w = np.maximum(result.x[:p], 0.0) / scale  # L-BFGS-B keeps the bound; max() drops -0.0
    return w, float(result.x[p] - w @ mean), int(result.nit)


def _binary_target(y: Any) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    check_classification_targets(y)
    kind = type_of_target(y)
    classes, encoded = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise CalibrationError(
            f"one class only: every outcome is {classes[0]!r}; both classes are needed"
        )
    if kind != "binary":
        raise CalibrationError(
            "Only binary classification is supported (serious outcome or not); "
            f"the type of the target is {kind}, with {classes.size} classes"
        )
    return classes, encoded.astype(np.int64)


# --------------------------------------------------------------------------------------------
# ScoreCalibrator


@dataclass(frozen=True)
class _Sigmoid:
    """p = expit(intercept − slope·score), slope ≥ 0: non-increasing in the score."""

    slope: float
    intercept: float

    def predict(self, s: FloatArray) -> FloatArray:
        return special.expit(self.intercept - self.slope * s)


# The sigmoid's weak ridge on the standardised slope: keeps a separable history (every
# serious outcome below every clean score) from sending the slope to infinity.
_SIGMOID_RIDGE = 1e-4


def _fit_map(method: str, s: FloatArray, y: npt.NDArray[np.int64]) -> IsotonicRegression | _Sigmoid:
    if method == "isotonic":
        iso = IsotonicRegression(increasing=False, out_of_bounds="clip", y_min=0.0, y_max=1.0)
        return iso.fit(s, y.astype(np.float64))
    # one row per distinct score, weighted by its institutions: the same fit, far fewer rows
    levels, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    events = np.bincount(inverse, weights=y, minlength=levels.size)
    w, b, _ = _fit_logistic(
        -levels[:, None],
        events / counts,
        weight=counts.astype(np.float64),
        alpha=_SIGMOID_RIDGE,
        penalize_standardized=True,
        max_iter=1000,
        tol=1e-8,
    )
    return _Sigmoid(slope=float(w[0]), intercept=b)


def _predict_map(model: IsotonicRegression | _Sigmoid, s: FloatArray) -> FloatArray:
    return np.clip(np.asarray(model.predict(s), dtype=np.float64), 0.0, 1.0)


class ScoreCalibrator(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Rule score → probability of a serious outcome the next year, non-increasing in score.

    Fits two maps, both non-increasing in the score:

    - isotonic: `IsotonicRegression(increasing=False, out_of_bounds="clip")`;
    - sigmoid: a logistic regression on the score whose slope is constrained to be ≤ 0 while
      fitting (so the curve can never rise with the score), with a very weak ridge.

    With `method="auto"` both are scored by `cv`-fold stratified cross-validated Brier score
    (folds shuffled with `random_state`, so deterministic) and the lower wins; an exact tie
    goes to the sigmoid (two parameters). `cv_brier_` holds both scores, `method_` the choice;
    the final map is refitted on all the data.

    Intervals (`predict_interval`): a stratified bootstrap of the training set (each class
    resampled with replacement to its own size, `n_bootstraps` times, from `random_state`),
    the chosen method refitted on each resample; the bounds are the alpha/2 and 1 − alpha/2
    percentiles of the resampled predictions. Pointwise, not simultaneous, and conditional on
    the chosen method (the choice is not repeated inside the bootstrap). Since every resampled
    map is non-increasing, so are both bounds.

    X: the score, as a 1-d array, an (n, 1) array or a one-column DataFrame. y: binary; the
    larger label (1) is the serious outcome. Refuses NaN, one class only, fewer than
    `min_samples` institutions, or fewer than `cv` of either outcome.
    """

    def __init__(
        self,
        method: str = "auto",
        cv: int = 5,
        n_bootstraps: int = 200,
        random_state: int | None = 0,
        min_samples: int = MIN_INSTITUTIONS,
    ) -> None:
        self.method = method
        self.cv = cv
        self.n_bootstraps = n_bootstraps
        self.random_state = random_state
        self.min_samples = min_samples

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # One feature, like sklearn's IsotonicRegression (whose tags these are): the common
        # estimator checks, which fit on several features, are then not run on it.
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.classifier_tags.multi_class = False
        return tags

    def _scores(self, X: Any, *, reset: bool, y: Any = "no_validation") -> Any:
        """The scores as a vector (and y checked alongside when fitting): a 1-d input is taken
        as one column; validate_data does the rest (NaN, lengths, feature names)."""
        if not hasattr(X, "columns") and not sp.issparse(X):
            as_array = np.asarray(X)
            if as_array.ndim == 1:
                X = as_array.reshape(-1, 1)  # a bare vector of scores is one column
        checked = validate_data(self, X, y, reset=reset, dtype=np.float64)
        X, y = checked if isinstance(checked, tuple) else (checked, None)
        if X.shape[1] != 1:
            raise CalibrationError(
                f"ScoreCalibrator takes one feature (the score), got {X.shape[1]} columns"
            )
        return X[:, 0] if y is None else (X[:, 0], y)

    def fit(self, X: Any, y: Any) -> ScoreCalibrator:
        if self.method not in ("auto", "isotonic", "sigmoid"):
            raise CalibrationError(
                f"method must be 'auto', 'isotonic' or 'sigmoid', got {self.method!r}"
            )
        for name in ("cv", "n_bootstraps", "min_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise CalibrationError(f"{name} must be a whole number, got {value!r}")
        if self.cv < 2:
            raise CalibrationError(f"cv must be at least 2, got {self.cv}")
        if self.n_bootstraps < 0:
            raise CalibrationError(f"n_bootstraps must be ≥ 0, got {self.n_bootstraps}")
        s, y = self._scores(X, reset=True, y=y)
        self.classes_, y01 = _binary_target(y)
        _enough(s.shape[0], self.min_samples)
        fewest = int(np.bincount(y01).min())
        if fewest < self.cv:
            raise CalibrationError(
                f"too few institutions of one class for cv={self.cv}: the rarer outcome has "
                f"{fewest} sample(s)"
            )
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max, size=2)

        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=int(seed[0]))
        errors = {"isotonic": 0.0, "sigmoid": 0.0}
        for train, test in folds.split(s.reshape(-1, 1), y01):
            for method in errors:
                fold_model = _fit_map(method, s[train], y01[train])
                errors[method] += float(
                    np.sum((_predict_map(fold_model, s[test]) - y01[test]) ** 2)
                )
        self.cv_brier_ = {m: e / s.shape[0] for m, e in errors.items()}
        if self.method == "auto":
            better = self.cv_brier_["isotonic"] < self.cv_brier_["sigmoid"]
            self.method_ = "isotonic" if better else "sigmoid"
        else:
            self.method_ = self.method
        self.model_ = _fit_map(self.method_, s, y01)

        rng = np.random.RandomState(int(seed[1]))
        by_class = [np.flatnonzero(y01 == c) for c in (0, 1)]
        self.bootstrap_models_ = []
        for _ in range(self.n_bootstraps):
            rows = np.concatenate(
                [rng.choice(idx, size=idx.size, replace=True) for idx in by_class]
            )
            self.bootstrap_models_.append(_fit_map(self.method_, s[rows], y01[rows]))
        return self

    def _risk(self, X: Any) -> FloatArray:
        s = self._scores(X, reset=False)
        return _predict_map(self.model_, s)

    def predict_proba(self, X: Any) -> FloatArray:
        """(n, 2): columns follow `classes_`; column 1 is the serious outcome."""
        check_is_fitted(self)
        p = self._risk(X)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """The more likely class (serious outcome when its probability exceeds 0.5)."""
        check_is_fitted(self)
        return self.classes_[(self._risk(X) > 0.5).astype(np.intp)]

    def predict_interval(self, X: Any, alpha: float = 0.05) -> FloatArray:
        """(n, 2): lower and upper bootstrap percentile bounds (level 1 − alpha) for the
        probability of a serious outcome. See the class docstring for the method."""
        check_is_fitted(self)
        _check_alpha(alpha)
        if not self.bootstrap_models_:
            raise CalibrationError("no bootstrap was run (n_bootstraps=0): no interval")
        s = self._scores(X, reset=False)
        draws = np.stack([_predict_map(m, s) for m in self.bootstrap_models_])
        lower, upper = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
        return np.column_stack([lower, upper])


# --------------------------------------------------------------------------------------------
# NonNegativeLogistic


class NonNegativeLogistic(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Logistic regression with every weight constrained to be ≥ 0 (intercept free).

    Meant for points lost per indicator (one column per indicator code): losing points can
    only add risk. The constraint is part of the fit (L-BFGS-B with bounds (0, None) on the
    weights), not a clip afterwards. Objective: mean log loss + alpha/2 · ‖coef‖² (ridge on the
    raw weights; alpha=0 is plain maximum likelihood). `coef_` has shape (1, n_features) like
    scikit-learn's LogisticRegression; `feature_names_in_` is set when fitted on a DataFrame.
    y: binary; the larger label (1) is the serious outcome.
    """

    def __init__(
        self,
        alpha: float = 0.0,
        max_iter: int = 1000,
        tol: float = 1e-6,
        min_samples: int = MIN_INSTITUTIONS,
    ) -> None:
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.min_samples = min_samples

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(self, X: Any, y: Any) -> NonNegativeLogistic:
        alpha = self.alpha
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha >= 0:
            raise CalibrationError(f"alpha must be a number ≥ 0, got {alpha!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int | np.integer):
            raise CalibrationError(f"max_iter must be a whole number, got {self.max_iter!r}")
        if self.max_iter < 1:
            raise CalibrationError(f"max_iter must be at least 1, got {self.max_iter}")
        X, y = validate_data(self, X, y, dtype=np.float64)
        self.classes_, y01 = _binary_target(y)
        _enough(X.shape[0], self.min_samples)
        w, b, n_iter = _fit_logistic(
            X,
            y01,
            alpha=float(alpha),
            penalize_standardized=False,
            max_iter=int(self.max_iter),
            tol=float(self.tol),
        )
        self.coef_ = w.reshape(1, -1)
        self.intercept_ = np.array([b])
        self.n_iter_ = n_iter
        return self

    def decision_function(self, X: Any) -> FloatArray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X: Any) -> FloatArray:
        p = special.expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> npt.NDArray[Any]:
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(np.intp)]


def proposed_points(
    coef: Any,
    codes: Sequence[str],
    total: int = SCORE_MAX,
    minimum: int = 0,
    current_points: Any = None,
) -> dict[str, int]:
    """A proposed allocation of `total` points over indicators, proportional to risk.

    Each indicator's share is proportional to its weight, or — with `current_points` (the
    points each indicator carries now, when the weights are per point lost) — to weight ×
    current points, the log-odds added by losing the indicator entirely. Every indicator first
    gets `minimum`; the rest is shared out and rounded by largest remainder (ties to the
    earlier code), so the integers sum to exactly `total` and none is negative."""
    w = _as_vector(np.ravel(np.asarray(coef, dtype=np.float64)), "coef")
    names = list(codes)
    if len(names) != w.size:
        raise CalibrationError(f"mismatched lengths: {w.size} weight(s), {len(names)} code(s)")
    if len(set(names)) != len(names):
        raise CalibrationError("codes must be distinct")
    if (w < 0).any():
        raise CalibrationError("weights must be ≥ 0 (fit them with NonNegativeLogistic)")
    if current_points is not None:
        current = _as_vector(current_points, "current_points")
        _same_length(w, current, "coef", "current_points")
        if (current < 0).any():
            raise CalibrationError("current_points must be ≥ 0")
        w = w * current
    for name, value in (("total", total), ("minimum", minimum)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise CalibrationError(f"{name} must be a whole number ≥ 0, got {value!r}")
    rest = int(total) - int(minimum) * w.size
    if rest < 0:
        raise CalibrationError(
            f"minimum {minimum} for {w.size} indicators exceeds the total of {total}"
        )
    if w.sum() <= 0:
        raise CalibrationError("every weight is zero: there is nothing to allocate by")
    exact = rest * w / w.sum()
    points = np.floor(exact).astype(np.int64)
    short = rest - int(points.sum())
    order = np.argsort(-(exact - points), kind="stable")
    points[order[:short]] += 1
    return {code: int(minimum) + int(p) for code, p in zip(names, points, strict=True)}


# --------------------------------------------------------------------------------------------
# Proposed grade cut-offs


@dataclass(frozen=True)
class Band:
    """One proposed grade: scores min..max (whole points, inclusive), the institutions in it
    and their observed serious-outcome rate with its Wilson interval."""

    grade: str
    min: int
    max: int
    count: int
    events: int
    rate: float
    lower: float
    upper: float


def _isotonic_blocks(
    n: npt.NDArray[np.int64], k: npt.NDArray[np.int64]
) -> list[tuple[int, int, int, int]]:
    """Pool adjacent violators over score levels ordered from high score to low, so rates must
    rise: blocks (first level, last level, count, events) with strictly rising rates."""
    blocks: list[list[int]] = []
    for i in range(n.size):
        blocks.append([i, i, int(n[i]), int(k[i])])
        # merge while the previous block's rate is not strictly below the new one's
        while len(blocks) > 1 and blocks[-2][3] * blocks[-1][2] >= blocks[-1][3] * blocks[-2][2]:
            last = blocks.pop()
            blocks[-1][1] = last[1]
            blocks[-1][2] += last[2]
            blocks[-1][3] += last[3]
    return [(b[0], b[1], b[2], b[3]) for b in blocks]


def propose_cutoffs(
    scores: Any,
    outcomes: Any,
    grades: Sequence[str] = ("A", "B", "C", "D"),
    *,
    min_band_size: int = 10,
    alpha: float = 0.05,
    min_samples: int = MIN_INSTITUTIONS,
) -> list[Band]:
    """Grade bands over 0–1000 whose observed serious-outcome rate rises strictly from the
    first grade (highest scores) to the last.

    Method (deterministic): score levels from 1000 down are pooled by adjacent violators into
    blocks whose rates rise strictly; the blocks are then grouped into len(grades) runs of
    consecutive blocks, each of at least `min_band_size` institutions, minimising the Brier
    score of the band rates (Σ count·rate·(1 − rate)) by dynamic programming (ties to the
    earlier cut). Grouping consecutive blocks of strictly rising rates keeps the rates
    strictly rising. A band starts at the lowest score observed in it; the first band ends at
    1000 and the last starts at 0. Intervals are Wilson at level 1 − `alpha`.

    Raises CalibrationError for NaN, scores that are not whole points in 0–1000, mismatched
    lengths, one class only, fewer than `min_samples` institutions, or data that cannot carry
    that many bands (too few distinct risk levels, or bands smaller than `min_band_size`)."""
    s = _as_vector(scores, "scores")
    y = _as_outcome(outcomes, "outcomes")
    _same_length(s, y, "scores", "outcomes")
    if ((s < 0) | (s > SCORE_MAX) | (s != np.round(s))).any():
        raise CalibrationError("scores must be whole points between 0 and 1000")
    names = list(grades)
    if len(names) < 2 or len(set(names)) != len(names):
        raise CalibrationError(f"grades must be at least two distinct names, got {names}")
    if isinstance(min_band_size, bool) or not isinstance(min_band_size, int) or min_band_size < 1:
        raise CalibrationError(f"min_band_size must be a whole number ≥ 1, got {min_band_size!r}")
    _check_alpha(alpha)
    _enough(s.size, min_samples)
    _both_classes(y)

    levels, inverse = np.unique(s.astype(np.int64), return_inverse=True)
    levels, n_at, k_at = (
        levels[::-1],
        np.bincount(inverse, minlength=levels.size)[::-1],
        np.bincount(inverse, weights=y, minlength=levels.size).astype(np.int64)[::-1],
    )
    blocks = _isotonic_blocks(n_at, k_at)
    g = len(names)
    m = len(blocks)
    if m < g:
        raise CalibrationError(
            f"cannot make {g} grades with strictly rising outcome rates: the data support only "
            f"{m} distinct risk level(s) along the score"
        )
    cn = np.concatenate([[0], np.cumsum([b[2] for b in blocks])]).astype(np.float64)
    ck = np.concatenate([[0], np.cumsum([b[3] for b in blocks])]).astype(np.float64)

    def cost(i: npt.NDArray[np.int64], j: int) -> FloatArray:
        """Brier cost of grouping blocks i..j-1 for each start i (inf if too small)."""
        cnt = cn[j] - cn[i]
        ev = ck[j] - ck[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = ev - ev * ev / cnt
        return np.where(cnt >= min_band_size, c, np.inf)

    # best[t, j]: least cost of t+1 bands over blocks 0..j-1; back[t, j]: where the last starts
    best = np.full((g, m + 1), np.inf)
    back = np.zeros((g, m + 1), dtype=np.int64)
    for j in range(1, m + 1):
        best[0, j] = cost(np.zeros(1, dtype=np.int64), j)[0]
    for t in range(1, g):
        for j in range(t + 1, m + 1):
            starts = np.arange(t, j)
            total = best[t - 1, starts] + cost(starts, j)
            pick = int(np.argmin(total))
            best[t, j] = total[pick]
            back[t, j] = starts[pick]
    if not np.isfinite(best[g - 1, m]):
        raise CalibrationError(
            f"cannot make {g} grades with strictly rising outcome rates and at least "
            f"{min_band_size} institutions in each from {s.size} institutions"
        )
    cuts = [m]
    for t in range(g - 1, 0, -1):
        cuts.append(int(back[t, cuts[-1]]))
    cuts.append(0)
    cuts.reverse()  # band t covers blocks cuts[t]..cuts[t+1]-1

    bands: list[Band] = []
    upper_score = SCORE_MAX
    for t, name in enumerate(names):
        first, last = cuts[t], cuts[t + 1] - 1
        lowest = 0 if t == g - 1 else int(levels[blocks[last][1]])
        count = int(cn[last + 1] - cn[first])
        events = int(ck[last + 1] - ck[first])
        lo, hi = wilson_interval(events, count, alpha)
        bands.append(Band(name, lowest, upper_score, count, events, events / count, lo, hi))
        upper_score = lowest - 1
    return bands
