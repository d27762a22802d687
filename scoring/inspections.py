"""The inspection register (检查台账): checking the third input, the "双随机" inspection tasks.

Findings record what was wrong; an inspection that found nothing left no trace, so a year's
supervision could not be told from its absence. The register lists each task's inspections,
one row per institution per task, with what came of it (`InspectionResult`), and the year's
coverage (`scoring.coverage`) is computed from it. It is checked like the other two inputs
(`scoring.inputs`, whose table machinery this reuses: one report of every problem, located by
file, row, column and value; Chinese headers and Chinese words for `result` accepted):

- `task_id` non-empty (1–64 characters, no NUL), e.g. 西青教查〔2023〕3号;
- `uscc` a valid code of an institution on record (in the import or the database);
- `inspected_on` an ISO date, neither before the measure came into force (the rules'
  `issued_on`, 2022-12-03) nor after today;
- `result` one of `no_issue` (default), `findings`, `rectify`, `penalty` or 无问题, 发现问题,
  责令整改, 立案处罚; `note` free text;
- one row per institution per task: a repeated (task_id, uscc) is reported with its first row.

A finding may name its task in `reference`. `unknown_task_references` reports a finding whose
reference looks like a task id (contains `TASK_MARK`, 教查) and is dated in a year the register
covers (a year with at least one inspection on record), yet names no task on record: a typo
in the reference, or a task missing from the register. Years without any register (2022 and
2024 in the sample district) are not checked: their findings predate the register.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date
from enum import StrEnum

import numpy as np
import pandas as pd

from scoring.errors import Problem
from scoring.i18n import _
from scoring.inputs import (
    _ISO_DATE,
    DATE_DTYPE,
    ENGLISH_NAMES,
    BoolArray,
    Checked,
    Columns,
    Explain,
    _closest,
    _date_expected,
    _finding_codes,
    _mask,
    _one_of,
    _replace,
    _required,
    _Table,
)
from scoring.problems import MAX_PROBLEMS, ProblemList
from scoring.rules import RuleSet


class InspectionResult(StrEnum):
    """What came of one institution's inspection in one task."""

    no_issue = "no_issue"  # inspected, nothing found
    findings = "findings"  # something found (the findings file records what)
    rectify = "rectify"  # ordered to rectify (责令整改)
    penalty = "penalty"  # a case filed (立案), leading to an administrative penalty


INSPECTION_RESULTS = tuple(r.value for r in InspectionResult)

RESULT_WORDS = {
    "无问题": InspectionResult.no_issue.value,
    "发现问题": InspectionResult.findings.value,
    "责令整改": InspectionResult.rectify.value,
    "立案处罚": InspectionResult.penalty.value,
}
"""Chinese words accepted for `result`, normalised to the English code (what is stored)."""

INSPECTION_COLUMNS = Columns(
    required=("task_id", "uscc", "inspected_on"),
    optional={"result": InspectionResult.no_issue.value, "note": ""},
    order=("task_id", "uscc", "inspected_on", "result", "note"),
)
INSPECTION_FIELDS = INSPECTION_COLUMNS.order

TASK_MARK = "教查"
"""What a task id of the register contains (西青教查〔2023〕3号: 教 education bureau, 查
inspection). A finding's `reference` containing it is taken to name an inspection task."""

_TASK_ID = r"[^\s\x00](?:[^\x00]{0,62}[^\s\x00])?"  # 1-64 characters, no NUL, trimmed


def is_inspections(columns: Collection[object]) -> bool:
    """An inspections file names a task (`task_id` or 任务编号); the other inputs do not."""
    names = {str(c).strip().lstrip("\ufeff").strip() for c in columns}
    return "task_id" in {ENGLISH_NAMES.get(n, n) for n in names}


def validate_inspections(
    raw: pd.DataFrame,
    *,
    file: str,
    rules: RuleSet,
    known_uscc: Collection[str] | pd.Series | pd.Index | None,
    today: date,
) -> tuple[pd.DataFrame, Checked]:
    """The normalised register and the problems found in it (see the module's docstring).

    `known_uscc` are the codes of the institutions on record (None: any valid code). The frame
    is only meaningful when there are no problems; its columns are `INSPECTION_FIELDS`
    (`inspected_on` datetime64 at midnight, the rest text), with a RangeIndex.
    """
    table = _Table(raw, file, INSPECTION_COLUMNS)
    task_ids = table.check("task_id", _task_ids, _task_id_expected)
    codes = _finding_codes(table, known_uscc)
    columns = {
        "task_id": task_ids,
        "uscc": codes,
        "inspected_on": _days(table, since=rules.info.issued_on, today=today),
        "result": _results(table),
        "note": table.free_text("note"),
    }
    _check_once_per_task(table, task_ids, codes)
    return pd.DataFrame(columns), table.problems()


def unknown_task_references(
    findings: pd.DataFrame,
    tasks: pd.DataFrame,
    *,
    file: str,
    rows: Sequence[int] | None = None,
    column: str = "reference",
) -> ProblemList:
    """Findings whose `reference` looks like a task id but names no task on record.

    `findings` are normalised findings (`reference`, `occurred_on`); `tasks` the register's
    `task_id` and `inspected_on` (the import's and the database's together). Only findings
    dated in a year the register covers are checked. `rows` are the findings' row numbers as
    the file shows them (default: 1-based positions); `column` how the file names `reference`.
    """
    found = ProblemList()
    if findings.empty or tasks.empty:
        return found
    years = set(pd.to_datetime(tasks["inspected_on"]).dt.year.tolist())
    known = set(tasks["task_id"].astype(str).tolist())
    references = findings["reference"].astype(str).str.strip()
    in_register_year = _mask(pd.to_datetime(findings["occurred_on"]).dt.year.isin(years))
    bad = (
        _mask(references.str.contains(TASK_MARK, regex=False))
        & in_register_year
        & ~_mask(references.isin(known))
    )
    numbers = list(rows) if rows is not None else list(range(1, len(findings) + 1))
    listed = sorted(known)
    for position in np.flatnonzero(bad):
        reference = str(findings["reference"].iloc[position])
        year = pd.Timestamp(findings["occurred_on"].iloc[position]).year
        guess = _closest(reference, listed, cutoff=0.8)
        expected = _(
            "a task of the inspection register: {year}'s register has no task {reference!r}"
        ).format(year=year, reference=reference.strip())
        if guess:
            expected = _("{text}; did you mean {guess!r}?").format(text=expected, guess=guess)
        found.add(Problem(file, int(numbers[position]), column, reference, expected))
    return found


def reference_column(raw: pd.DataFrame) -> str:
    """How a findings file names `reference` (文号 in a Chinese header row)."""
    names = [str(c).strip().lstrip("\ufeff").strip() for c in raw.columns]
    return next((n for n in names if ENGLISH_NAMES.get(n, n) == "reference"), "reference")


# Column checks -----------------------------------------------------------------------------


def _task_ids(text: pd.Series) -> BoolArray:
    return _mask(text.str.fullmatch(_TASK_ID))


def _task_id_expected(value: str) -> str:
    return _("a task id of 1-64 characters, e.g. 西青教查〔2023〕3号")


def _results(table: _Table) -> pd.Series:
    """`result` as its code: given by the code or its Chinese word; empty means no_issue."""

    def expected(value: str) -> str:
        text = _("one of {choices} (or {words}; empty means {default})").format(
            choices=", ".join(INSPECTION_RESULTS),
            words="、".join(RESULT_WORDS),
            default=table.default("result"),
        )
        text_given = value.strip()
        # a Chinese word shortened (整改 for 责令整改) or an English code misspelt
        words = [w for w in RESULT_WORDS if text_given and text_given in w]
        guess = words[0] if len(words) == 1 else _closest(value, INSPECTION_RESULTS)
        return (
            _("{text}; did you mean {guess!r}?").format(text=text, guess=guess) if guess else text
        )

    checked = table.check("result", _one_of([*INSPECTION_RESULTS, *RESULT_WORDS]), expected)
    return _replace(checked, RESULT_WORDS)


def _days(table: _Table, *, since: date, today: date) -> pd.Series:
    """`inspected_on` as datetime64 at midnight (NaT where refused), within [since, today]."""
    name = "inspected_on"
    raw = table.column(name)
    if raw is None:
        return pd.Series(np.full(table.size, np.datetime64("NaT"), dtype=DATE_DTYPE))
    if raw.dtype == object and pd.api.types.infer_dtype(raw, skipna=True) in ("date", "datetime"):
        raw = pd.Series(pd.to_datetime(raw), index=raw.index)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        if getattr(raw.dt, "tz", None) is not None:
            raw = raw.dt.tz_localize(None)
        table.report(_mask(raw.isna()), name, raw, _required(table.show(name)))
        days = pd.Series(raw.to_numpy().astype("datetime64[D]").astype(DATE_DTYPE))
    else:
        coded = table.coded(name)
        parsed = pd.to_datetime(coded.uniques, format="%Y-%m-%d", errors="coerce")
        empty = coded.empty()
        good = (
            _mask(coded.uniques.str.fullmatch(_ISO_DATE.pattern))
            & _mask(parsed.notna())
            & _mask(parsed.year >= 1)
        )
        coded.report(table, name, empty, _required(table.show(name)))
        coded.report(table, name, ~empty & ~good, _date_expected)
        values = parsed.to_numpy().astype(DATE_DTYPE)
        values[~good] = np.datetime64("NaT")
        days = pd.Series(values[coded.codes])
    first, last = np.datetime64(since, "us"), np.datetime64(today, "us")
    known = _mask(days.notna())
    early = known & _mask(days < first)
    late = known & _mask(days > last)
    table.report(
        early,
        name,
        raw,
        lambda value: _(
            "a date on or after {since}, when the measure came into force (法不溯及既往)"
        ).format(since=since.isoformat()),
    )
    table.report(
        late,
        name,
        raw,
        lambda value: _("a date no later than today ({today}): an inspection done").format(
            today=today.isoformat()
        ),
    )
    return days


def _check_once_per_task(table: _Table, task_ids: pd.Series, codes: pd.Series) -> None:
    """Every later row of a (task, institution) pair already listed is reported, with the
    first row; rows whose task or code is itself refused are left to those problems."""
    if table.column("task_id") is None or table.column("uscc") is None:
        return
    usable = ~table.refused.get("task_id", np.zeros(table.size, dtype=bool))
    usable &= ~table.refused.get("uscc", np.zeros(table.size, dtype=bool))
    pairs = pd.Series(task_ids.astype(str).to_numpy(), dtype=object) + "\x00" + codes.astype(str)
    pairs = pairs.where(usable, None)
    repeated = usable & _mask(pairs.duplicated(keep="first"))
    if not repeated.any():
        return
    firsts = pairs[usable & ~_mask(pairs.duplicated(keep="first"))]
    first = dict(zip(firsts.tolist(), table.rows[firsts.index.to_numpy()].tolist(), strict=True))
    shown_task = table.show("task_id")
    positions = np.flatnonzero(repeated)

    def expected(row: int) -> Explain:
        return lambda code: _(
            "one row per institution per task: this {column} already lists it on row {row}"
        ).format(column=shown_task, row=row)

    for position in positions[:MAX_PROBLEMS]:  # each names its own first row
        one = np.zeros(table.size, dtype=bool)
        one[position] = True
        table.report(one, "uscc", codes, expected(first[pairs.iloc[position]]))
    table._total += max(len(positions) - MAX_PROBLEMS, 0)  # counted, not listed
