"""The inspection register as the scorer checks it, and a year's coverage computed from it.

Pure: frames and files in, problems and figures out. The sample district's 2023 register must
give the seed report's figures exactly (8 tasks, 15 of 16 institutions, 2 ordered to rectify,
1 penalty); every problem of a bad register is reported at once, located by row and column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from scoring.coverage import coverage
from scoring.input_files import read_inputs, read_raw
from scoring.inspections import (
    is_inspections,
    reference_column,
    unknown_task_references,
    validate_inspections,
)
from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSPECTIONS, SAMPLE_INSTITUTIONS, load_rules

RULES = load_rules()
TODAY = date(2026, 11, 27)
BOWEN = "52120111MJ06185738"  # 博文: the 2023 penalty
SIQI = "52120111MJ0635046U"  # 思齐: not drawn in 2023
RUIXUE, ZHIXING = "52120111MJ0640226Q", "52120111MJ0633917G"  # ordered to rectify
QIHANG = "52120111MJ0627485A"


Sample = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]
"""The sample district's institutions, findings and inspection register, checked."""


@pytest.fixture(scope="module")
def sample() -> Sample:
    institutions, findings = read_inputs(SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS, rules=RULES)
    raw, problems = read_raw(SAMPLE_INSPECTIONS)
    assert raw is not None and not problems
    register, found = validate_inspections(
        raw, file="inspections.csv", rules=RULES, known_uscc=institutions["uscc"], today=TODAY
    )
    assert list(found) == [] and found.total == 0
    return institutions, findings, register


def check(
    rows: Sequence[Mapping[str, object]], *, known: list[str] | None = None, first_row: int = 2
) -> tuple[pd.DataFrame, list[tuple[int | None, str | None, str]]]:
    raw = pd.DataFrame(list(rows), index=range(first_row, first_row + len(rows)))
    frame, problems = validate_inspections(
        raw, file="register.csv", rules=RULES, known_uscc=known, today=TODAY
    )
    return frame, [(p.row, p.column, p.expected) for p in problems]


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "task_id": "西青教查〔2023〕3号",
        "uscc": QIHANG,
        "inspected_on": "2023-05-23",
        "result": "no_issue",
        "note": "",
    }
    return {**base, **changes}


def test_the_sample_register_gives_the_seed_reports_2023_figures(sample: Sample) -> None:
    institutions, findings, register = sample
    result = coverage(institutions, register, findings, 2023)
    assert len(result.tasks) == 8
    assert [t.task_id for t in result.tasks] == [f"西青教查〔2023〕{n}号" for n in range(1, 9)]
    assert (len(result.covered), result.institutions) == (15, 16)
    assert [i.uscc for i in result.rectify] == sorted([RUIXUE, ZHIXING])
    assert [i.uscc for i in result.penalty] == [BOWEN]
    assert [(i.uscc, i.name) for i in result.not_covered] == [
        (SIQI, "天津市西青区思齐文化培训学校")
    ]
    assert result.inspections == len(register)
    # the penalised institution's finding under no_penalties is of the same year
    penalty = findings[(findings["uscc"] == BOWEN) & (findings["indicator"] == "no_penalties")]
    assert penalty["occurred_on"].dt.year.tolist() == [2023]
    # no other year has a register in the sample
    assert coverage(institutions, register, findings, 2024).tasks == []
    assert len(coverage(institutions, register, findings, 2024).not_covered) == 16


def test_the_sample_findings_name_only_tasks_of_the_register(sample: Sample) -> None:
    _, findings, register = sample
    assert unknown_task_references(findings, register, file="findings.csv") == []
    cited = set(findings.loc[findings["occurred_on"].dt.year == 2023, "reference"])
    assert {t for t in cited if "教查" in t} == set(register["task_id"])


def test_every_problem_of_a_register_is_reported_at_once_with_its_row_and_column() -> None:
    rows = [
        row(task_id="西青教查〔2023〕3号"),  # 2: fine
        row(task_id=""),  # 3
        row(uscc="52120111MJ0627485B"),  # 4: wrong check character
        row(uscc="52120111MJ0799999X"),  # 5: not an institution on record (bad check char too)
        row(inspected_on="2023-02-30"),  # 6
        row(inspected_on="2022-12-02"),  # 7: the day before the measure
        row(inspected_on="2026-11-28"),  # 8: tomorrow
        row(result="closed"),  # 9
        row(),  # 10: the same task and institution as row 2
        row(task_id="x" * 65),  # 11
        row(inspected_on="23-5-1"),  # 12
    ]
    for number, one in enumerate(rows, start=2):  # each its own task, but for row 10
        if number not in (2, 3, 10, 11):
            one["task_id"] = f"西青教查〔2023〕{number}号"
    frame, problems = check(rows, known=[QIHANG])
    located = [(r, c) for r, c, _ in problems]
    assert located == [
        (3, "task_id"),
        (4, "uscc"),
        (5, "uscc"),
        (6, "inspected_on"),
        (7, "inspected_on"),
        (8, "inspected_on"),
        (9, "result"),
        (10, "uscc"),
        (11, "task_id"),
        (12, "inspected_on"),
    ]
    said = {(r, c): e for r, c, e in problems}
    assert "2022-12-03" in said[(7, "inspected_on")]
    assert "2026-11-27" in said[(8, "inspected_on")]
    assert "no_issue, findings, rectify, penalty" in said[(9, "result")]
    assert "责令整改" in said[(9, "result")]
    assert "already lists it on row 2" in said[(10, "uscc")]
    assert "YYYY-MM-DD" in said[(12, "inspected_on")]
    assert "check character" in said[(4, "uscc")]
    assert frame.loc[0, "result"] == "no_issue"


def test_the_same_institution_in_two_tasks_and_two_in_one_task_are_fine() -> None:
    other = "52120111MJ0631902H"
    _, problems = check(
        [
            row(),
            row(task_id="西青教查〔2023〕4号", inspected_on="2023-07-11"),
            row(uscc=other),
        ]
    )
    assert problems == []


def test_an_extra_or_missing_column_is_an_error() -> None:
    _, problems = check([{**row(), "inspector": "张三"}])
    assert [(r, c) for r, c, _ in problems] == [(None, "inspector")]
    _, problems = check([{k: v for k, v in row().items() if k != "inspected_on"}])
    assert [(r, c) for r, c, _ in problems] == [(None, "inspected_on")]
    assert "required column" in problems[0][2]


def test_defaults_and_surrounding_spaces() -> None:
    frame, problems = check([row(result="", note="", uscc=f" {QIHANG} ")])
    assert problems == []
    assert frame.loc[0, "result"] == "no_issue" and frame.loc[0, "uscc"] == QIHANG
    frame, problems = check([{k: v for k, v in row().items() if k not in ("result", "note")}])
    assert problems == [] and frame.loc[0, "result"] == "no_issue"


def test_chinese_headers_and_result_words_are_normalised_to_the_contract() -> None:
    chinese = {
        "任务编号": "西青教查〔2023〕5号",
        "统一社会信用代码": QIHANG,
        "检查日期": "2023-08-09",
    }
    rows = [
        {**chinese, "检查结果": word, "备注": ""}
        for word in ("无问题", "发现问题", "责令整改", "立案处罚")
    ]
    rows = [{**r, "任务编号": f"西青教查〔2023〕{n}号"} for n, r in enumerate(rows, start=5)]
    assert is_inspections(rows[0].keys())
    frame, problems = check(rows)
    assert problems == []
    assert list(frame.columns) == ["task_id", "uscc", "inspected_on", "result", "note"]
    assert frame["result"].tolist() == ["no_issue", "findings", "rectify", "penalty"]
    assert frame["inspected_on"].dt.date.tolist() == [date(2023, 8, 9)] * 4
    # problems name the columns as the file writes them
    _, problems = check([{**rows[0], "检查结果": "整改"}])
    assert [(r, c) for r, c, _ in problems] == [(2, "检查结果")]
    assert "did you mean '责令整改'?" in problems[0][2]
    # one language per header row
    _, problems = check([{**rows[0], "note": ""}])
    assert any(r is None and "one language" in e for r, _, e in problems)


def test_kinds_of_file_are_told_apart_by_their_columns() -> None:
    assert is_inspections(["\ufefftask_id", "uscc", "inspected_on"])
    assert is_inspections([" 任务编号 ", "统一社会信用代码", "检查日期"])
    assert not is_inspections(["uscc", "indicator", "occurred_on", "reference"])
    assert not is_inspections(["uscc", "name", "district_code", "licence_no"])


def test_a_workbook_register_with_real_dates_is_read(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["任务编号", "统一社会信用代码", "检查日期", "检查结果"])
    sheet.append(["西青教查〔2023〕3号", QIHANG, date(2023, 5, 23), "无问题"])
    sheet.append(["西青教查〔2023〕3号", QIHANG, date(2023, 5, 24), "无问题"])
    path = tmp_path / "检查台账.xlsx"
    book.save(path)
    raw, problems = read_raw(path)
    assert raw is not None and not problems
    frame, found = validate_inspections(
        raw, file=path.name, rules=RULES, known_uscc=[QIHANG], today=TODAY
    )
    assert [(p.row, p.column) for p in found] == [(3, "统一社会信用代码")]
    assert frame.loc[0, "inspected_on"] == pd.Timestamp("2023-05-23")


def test_typed_dates_are_checked_in_their_type() -> None:
    raw = pd.DataFrame(
        {
            "task_id": ["t1", "t2", "t3"],
            "uscc": [QIHANG] * 3,
            "inspected_on": pd.to_datetime(
                pd.Series(["2023-05-23", "2021-01-01", None], index=[1, 2, 3])
            ),
        },
        index=[1, 2, 3],
    )
    _, found = validate_inspections(
        raw, file="register.parquet", rules=RULES, known_uscc=None, today=TODAY
    )
    assert [(p.row, p.column) for p in found] == [(2, "inspected_on"), (3, "inspected_on")]


# Findings naming a task -------------------------------------------------------------------


def findings(*references: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "reference": [r for r, _ in references],
            "occurred_on": pd.to_datetime([d for _, d in references]),
        }
    )


TASKS = pd.DataFrame(
    {
        "task_id": ["西青教查〔2023〕1号", "西青教查〔2023〕2号"],
        "inspected_on": pd.to_datetime(["2023-03-14", "2023-04-18"]),
    }
)


def test_a_finding_naming_a_task_the_register_lacks_is_reported() -> None:
    found = findings(
        ("西青教查〔2023〕1号", "2023-03-14"),  # known
        ("西青教查〔2023〕3号", "2023-05-23"),  # unknown, in a year with a register
        ("西青教查〔2024〕1号", "2024-03-12"),  # 2024 has no register: not checked
        ("西青教罚〔2023〕1号", "2023-11-28"),  # a penalty decision, not a task
        ("12345热线工单202306050027", "2023-06-05"),
        ("", "2023-06-05"),
        (" 西青教查〔2023〕2号 ", "2023-04-18"),  # known, spaces forgiven
    )
    problems = unknown_task_references(found, TASKS, file="findings.csv", rows=range(2, 9))
    assert [(p.file, p.row, p.column, p.value) for p in problems] == [
        ("findings.csv", 3, "reference", "西青教查〔2023〕3号")
    ]
    assert "2023's register has no task" in problems[0].expected
    assert "did you mean" in problems[0].expected


def test_without_any_register_no_reference_is_checked() -> None:
    found = findings(("西青教查〔2023〕3号", "2023-05-23"))
    empty = TASKS.iloc[0:0]
    assert unknown_task_references(found, empty, file="findings.csv") == []


def test_the_reference_column_is_named_as_the_file_names_it() -> None:
    assert reference_column(pd.DataFrame(columns=["统一社会信用代码", "文号"])) == "文号"
    assert reference_column(pd.DataFrame(columns=["uscc", "reference"])) == "reference"


# Coverage ---------------------------------------------------------------------------------


def test_coverage_counts_results_findings_and_leaves_closed_institutions_out() -> None:
    institutions = pd.DataFrame(
        {
            "uscc": ["A1", "B2", "C3", "D4", "E5"],
            "name": ["甲", "乙", "丙", "丁", "戊"],
            "status": ["operating", "operating", "suspended", "closed", "closed"],
        }
    )
    register = pd.DataFrame(
        {
            "task_id": ["T1", "T1", "T2", "T2", "T0"],
            "uscc": ["A1", "B2", "A1", "E5", "C3"],
            "inspected_on": pd.to_datetime(
                ["2023-03-01", "2023-03-02", "2023-06-01", "2023-06-01", "2022-12-20"]
            ),
            "result": ["no_issue", "no_issue", "rectify", "penalty", "findings"],
        }
    )
    found = pd.DataFrame(
        {
            "uscc": ["B2", "C3", "A1"],
            "occurred_on": pd.to_datetime(["2023-03-02", "2023-03-02", "2023-03-01"]),
            "reference": ["T1", "T1", "T1"],
            "status": ["active", "active", "revoked"],
        }
    )
    result = coverage(institutions, register, found, 2023)
    assert [
        (t.task_id, t.institutions, t.with_findings, t.rectify, t.penalty) for t in result.tasks
    ] == [
        ("T1", 2, 1, 0, 0),
        ("T2", 2, 2, 1, 1),
    ]
    assert result.tasks[0].first_day == date(2023, 3, 1)
    assert result.tasks[0].last_day == date(2023, 3, 2)
    assert result.institutions == 3  # D4 and E5 are closed
    assert [i.uscc for i in result.covered] == ["A1", "B2", "E5"]
    # B2: an active finding citing the task that inspected it; A1: ordered to rectify in T2
    # (its revoked finding would not count); E5: penalty. C3 was inspected in 2022 only.
    assert [i.uscc for i in result.with_findings] == ["A1", "B2", "E5"]
    assert [i.uscc for i in result.rectify] == ["A1"]
    assert [i.uscc for i in result.penalty] == ["E5"]
    assert [i.uscc for i in result.not_covered] == ["C3"]  # D4 is closed: not expected
    only_2022 = coverage(institutions, register, found, 2022)
    assert [t.task_id for t in only_2022.tasks] == ["T0"]
