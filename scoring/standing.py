"""An institution's status in a year's result (docs/measure.md, "Institution status").

A `closed` institution (注销) is listed as not rated, with the reason, and is never graded:
so it is never drawn for inspection or shared with the city platform either, since those
read the graded rows. A `suspended` one (暂停办学) is rated like any other and marked. This
module splits the inputs accordingly, before the engine, which only does arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scoring.errors import ScoringError
from scoring.inputs import InstitutionStatus
from scoring.uscc_columns import listed

CLOSED_REASON = "已注销（closed）：不予评价，不参与抽查与共享"
"""Why a closed institution has no grade: shown wherever the year's result is."""


@dataclass(frozen=True)
class Standing:
    """The inputs of a year's rating split by status."""

    rated: pd.DataFrame  # institutions to grade: operating and suspended
    findings: pd.DataFrame  # the findings against them
    closed: pd.DataFrame  # institutions listed as not rated

    @property
    def suspended(self) -> set[str]:
        """Credit codes of the rated institutions that are suspended (marked in the result)."""
        if "status" not in self.rated.columns:
            return set()
        return set(self.rated["uscc"][self.rated["status"].eq(InstitutionStatus.suspended)])

    def rated_only(self, uscc: str) -> str:
        """`uscc`, or NotRated when it names a closed institution."""
        if uscc in set(self.closed["uscc"]):
            raise NotRated(uscc)
        return uscc

    def not_rated(self) -> list[dict[str, Any]]:
        """The closed institutions as a result lists them, in credit-code order."""
        return [
            {"uscc": str(uscc), "name": str(name), "reason": CLOSED_REASON}
            for uscc, name in sorted(zip(self.closed["uscc"], self.closed["name"], strict=True))
        ]


class NotRated(ScoringError):
    """Asked for the grade or explanation of an institution a result lists as not rated."""

    def __init__(self, uscc: str) -> None:
        self.uscc = uscc
        super().__init__(f"{uscc} is not rated: {CLOSED_REASON}")


def standing(
    institutions: pd.DataFrame, findings: pd.DataFrame, *, checked: bool = False
) -> Standing:
    """Split `institutions` (and their `findings`) into those rated and those closed. Frames
    without a `status` column (the engine's minimum) are all rated.

    `checked`: every finding names an institution of the list (validated input, e.g.
    `scoring.inputs.validate`), so the findings kept are those not of a closed institution,
    found against the few closed codes (a million institutions, ten million findings: a
    tenth of the time); the findings are copied only when some are of a closed institution.
    """
    if "status" not in institutions.columns:
        return Standing(institutions, findings, institutions.iloc[:0])
    closed = institutions["status"].eq(InstitutionStatus.closed).to_numpy(dtype=bool)
    if not closed.any():
        return Standing(institutions, findings, institutions.iloc[:0])
    rated = institutions[~closed].reset_index(drop=True)
    gone = institutions[closed].reset_index(drop=True)
    if checked:
        codes = pa.array(findings["uscc"], type=pa.large_string(), from_pandas=True)
        closed_codes = pa.array(gone["uscc"], type=pa.large_string(), from_pandas=True)
        theirs = ~np.asarray(pc.is_in(codes, value_set=closed_codes).fill_null(False), dtype=bool)
        if theirs.all():
            return Standing(rated, findings.reset_index(drop=True), gone)
    else:
        theirs = listed(findings["uscc"], rated["uscc"])  # isin, fast for ten million findings
    return Standing(rated, _rows(findings, theirs), gone)


def rated_part(rating: pd.DataFrame, institutions: pd.DataFrame) -> tuple[pd.DataFrame, Standing]:
    """The rows of the rated institutions of `rating`, and the split of `institutions`.

    `rating` rates every institution, closed ones too: row i is institution i, rated from its
    own findings alone (`scoring.engine.rate`), so its rated rows are exactly the rating of
    `standing(institutions, findings).rated` with their findings, without copying ten
    million findings to leave out those of the few closed institutions. The split's
    `findings` are empty: they are not needed to mark a rating (`marked`).
    """
    none = pd.DataFrame({"uscc": pd.Series([], dtype="str")})
    if "status" not in institutions.columns:
        return rating, Standing(institutions, none, institutions.iloc[:0])
    closed = institutions["status"].eq(InstitutionStatus.closed).to_numpy(dtype=bool)
    if not closed.any():
        return rating, Standing(institutions, none, institutions.iloc[:0])
    rated = institutions[~closed].reset_index(drop=True)
    gone = institutions[closed].reset_index(drop=True)
    return rating[~closed].reset_index(drop=True), Standing(rated, none, gone)


def _rows(frame: pd.DataFrame, keep: npt.NDArray[np.bool_]) -> pd.DataFrame:
    """`frame[keep].reset_index(drop=True)`, text columns filtered by Arrow (pandas' boolean
    indexing of ten million Arrow strings took twice as long)."""
    if not frame.columns.is_unique:
        return frame[keep].reset_index(drop=True)
    mask = pa.array(keep, type=pa.bool_())
    columns: dict[Any, Any] = {}
    for name, column in frame.items():
        if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
            columns[name] = pd.array(pa.array(column).filter(mask), dtype=column.dtype)
        elif isinstance(column.dtype, np.dtype):
            columns[name] = column.to_numpy()[keep]
        else:
            columns[name] = column[keep].reset_index(drop=True)
    return pd.DataFrame(columns, columns=frame.columns)


def marked(rating: pd.DataFrame, split: Standing) -> pd.DataFrame:
    """`rating` (of `split.rated`) with a `status` column after the name, then a row per closed
    institution: status `closed`, no score or grade, and the reason. The year's result as a
    table says everything about every institution."""
    out = rating.copy(deep=False)  # a column is inserted, nothing changed: `rating` stays
    suspended = np.zeros(len(out), dtype=bool)
    if "status" in split.rated.columns:
        codes = split.rated["uscc"][split.rated["status"].eq(InstitutionStatus.suspended)]
        if len(codes):
            suspended = listed(out["uscc"], codes)
    status = np.where(
        suspended, InstitutionStatus.suspended.value, InstitutionStatus.operating.value
    )
    out.insert(2, "status", pd.Series(status, index=out.index, dtype="str"))
    if split.closed.empty:
        return out
    closed = pd.DataFrame(
        {
            "uscc": split.closed["uscc"].astype(str),
            "name": split.closed["name"].astype(str),
            "status": InstitutionStatus.closed.value,
            "reason": CLOSED_REASON,
        }
    )
    whole = pd.concat([out, closed], ignore_index=True)
    # Scores and points stay whole numbers beside the closed rows' missing values.
    numbers = [c for c in out.columns if pd.api.types.is_integer_dtype(out[c])]
    whole[numbers] = whole[numbers].astype("Int64")
    whole["vetoed"] = whole["vetoed"].astype("boolean")
    return whole
