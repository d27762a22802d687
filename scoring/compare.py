"""Two rule sets side by side on the same year's records: who would change grade.

A bureau adopts an amendment (a calibration's candidate rule set, say) only after seeing what
it does to real institutions. `compare` rates the same institutions and findings twice, under
the rules in force and under the proposal, and keeps both results in one frame; `grade_moves`
counts the institutions going from each grade to each other. Pure: frames in, frames out.
"""

from __future__ import annotations

import pandas as pd

from scoring.engine import rate
from scoring.rules import RulesInForce
from scoring.standing import standing

COMPARISON_COLUMNS = (
    "uscc",
    "name",
    "score",
    "grade",
    "proposed_score",
    "proposed_grade",
    "changed",
)


def compare(
    institutions: pd.DataFrame,
    findings: pd.DataFrame,
    current: RulesInForce,
    proposed: RulesInForce,
) -> pd.DataFrame:
    """One row per rated institution (closed ones are not): score and grade under `current`,
    under `proposed`, and whether the grade changes. Both must rate the same year on scales
    with the same grades."""
    if current.year != proposed.year:
        raise ValueError(
            f"both rule sets must rate one year, not {current.year} and {proposed.year}"
        )
    split = standing(institutions, findings)  # closed institutions are never graded
    before = rate(split.rated, split.findings, current)
    after = rate(split.rated, split.findings, proposed)
    frame = before[["uscc", "name", "score", "grade"]].merge(
        after[["uscc", "score", "grade"]].rename(
            columns={"score": "proposed_score", "grade": "proposed_grade"}
        ),
        on="uscc",
        validate="one_to_one",
    )
    frame["changed"] = frame["grade"].astype(str) != frame["proposed_grade"].astype(str)
    return frame[list(COMPARISON_COLUMNS)]


def grade_moves(comparison: pd.DataFrame, grades: list[str]) -> pd.DataFrame:
    """Institutions per (grade now → proposed grade), every grade of `grades` on both axes."""
    moves = pd.crosstab(comparison["grade"].astype(str), comparison["proposed_grade"].astype(str))
    return moves.reindex(index=grades, columns=grades, fill_value=0).astype(int)
