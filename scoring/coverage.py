"""A year's inspection coverage (抽查覆盖): what the bureau's annual report states in one line.

"8 random-inspection tasks covered 15 of 16 institutions; 2 were ordered to rectify; 1
penalty": the register (`scoring.inspections`) makes these figures computable, and the
institutions never inspected visible, so that next year's draw can look at them. A pure
function of the three inputs, the same from files and from the database:

- `tasks`: the distinct task ids with an inspection dated in the year, each with its days and
  counts;
- `covered`: the institutions inspected at least once in the year;
- `with_findings`: covered institutions with a result other than `no_issue` in the year, or
  an active finding of the year whose `reference` names a task that inspected them;
- `rectify` / `penalty`: covered institutions with that result in some task of the year;
- `not_covered`: listed institutions, not `closed`, never inspected in the year (a closed
  institution is not expected to be inspected); `institutions` counts the listed ones that
  are not closed, the figure "of 16" stands for.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import pandas as pd
from pydantic import BaseModel, ConfigDict

from scoring.inputs import FindingStatus, InstitutionStatus
from scoring.inspections import InspectionResult


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Institution(_Model):
    uscc: str
    name: str


class TaskCoverage(_Model):
    """One task of the year: its first and last day, and how many institutions it inspected."""

    task_id: str
    first_day: date
    last_day: date
    institutions: int
    with_findings: int
    rectify: int
    penalty: int


class Coverage(_Model):
    year: int
    institutions: int
    tasks: list[TaskCoverage]
    inspections: int
    covered: list[Institution]
    with_findings: list[Institution]
    rectify: list[Institution]
    penalty: list[Institution]
    not_covered: list[Institution]


def coverage(
    institutions: pd.DataFrame, inspections: pd.DataFrame, findings: pd.DataFrame, year: int
) -> Coverage:
    """The coverage of `year` (see the module's docstring); every list in credit-code order.

    Frames as `scoring.inputs` and `scoring.inspections` normalise them (or as the database
    gives them back): institutions `uscc`, `name`, `status`; inspections `task_id`, `uscc`,
    `inspected_on`, `result`; findings `uscc`, `occurred_on`, `reference`, `status`.
    """
    names = dict(zip(institutions["uscc"], institutions["name"], strict=True))
    register = inspections[pd.to_datetime(inspections["inspected_on"]).dt.year == year]
    register = register.assign(inspected_on=pd.to_datetime(register["inspected_on"]).dt.date)
    found = findings[
        (pd.to_datetime(findings["occurred_on"]).dt.year == year)
        & (findings["status"] == FindingStatus.active.value)
    ]
    cited = set(zip(found["uscc"], found["reference"].astype(str).str.strip(), strict=True))
    something = (register["result"] != InspectionResult.no_issue.value) | pd.Series(
        [(u, t) in cited for u, t in zip(register["uscc"], register["task_id"], strict=True)],
        index=register.index,
        dtype=bool,
    )
    register = register.assign(something=something)

    def listed(codes: Iterable[str]) -> list[Institution]:
        return [Institution(uscc=c, name=names.get(c, "")) for c in sorted(set(codes))]

    def having(result: InspectionResult) -> list[Institution]:
        return listed(register.loc[register["result"] == result.value, "uscc"])

    tasks = [
        TaskCoverage(
            task_id=str(task_id),
            first_day=rows["inspected_on"].min(),
            last_day=rows["inspected_on"].max(),
            institutions=rows["uscc"].nunique(),
            with_findings=rows.loc[rows["something"], "uscc"].nunique(),
            rectify=int((rows["result"] == InspectionResult.rectify.value).sum()),
            penalty=int((rows["result"] == InspectionResult.penalty.value).sum()),
        )
        for task_id, rows in register.groupby("task_id", sort=False)
    ]
    tasks.sort(key=lambda t: (t.first_day, t.task_id))
    operating = institutions[institutions["status"] != InstitutionStatus.closed.value]
    inspected = set(register["uscc"])
    return Coverage(
        year=year,
        institutions=len(operating),
        tasks=tasks,
        inspections=len(register),
        covered=listed(inspected),
        with_findings=listed(register.loc[register["something"], "uscc"]),
        rectify=having(InspectionResult.rectify),
        penalty=having(InspectionResult.penalty),
        not_covered=listed(c for c in operating["uscc"] if c not in inspected),
    )
