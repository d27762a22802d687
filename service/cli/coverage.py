"""`credit-rating coverage`: a year's inspection coverage, as the bureau's annual report states it.

"8 tasks covered 15 of 16 institutions; 2 ordered to rectify; 1 penalty", and who was never
inspected, from the three input files (the sample district when none are given) or from the
records in the database (`--stored`, what `GET /v1/coverage/{year}` answers). The files are
checked as `credit-rating import` checks them, a finding naming an unknown task included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich import box
from rich.console import Group
from rich.table import Table

from scoring.coverage import Coverage, Institution, coverage
from scoring.i18n import _
from scoring.input_files import read_raw
from scoring.inputs import validate_findings, validate_institutions
from scoring.inspections import reference_column, unknown_task_references, validate_inspections
from scoring.problems import ProblemList, raise_problems
from scoring.rules import RuleSet
from scoring.shipped import (
    SAMPLE_FINDINGS,
    SAMPLE_INSPECTIONS,
    SAMPLE_INSTITUTIONS,
    load_rules,
)
from service.cli import context, render
from service.cli.options import Findings, Format, Institutions, Year
from service.core.clock import beijing_date, now
from service.core.database import reading
from service.records import inspections as register
from service.records import storage

Inspections = Annotated[
    Path,
    typer.Option(
        help=_("Inspection register file (.csv, .json, .xlsx, .parquet)."), show_default=False
    ),
]


def coverage_command(
    year: Year,
    institutions: Institutions = SAMPLE_INSTITUTIONS,
    findings: Findings = SAMPLE_FINDINGS,
    inspections: Inspections = SAMPLE_INSPECTIONS,
    stored: Annotated[
        bool, typer.Option("--stored", help=_("The records in the database instead of files."))
    ] = False,
    format: Annotated[
        Format, typer.Option("--format", help=_("table (text) or json."))
    ] = Format.table,
) -> None:
    """YEAR's inspection coverage: tasks, institutions covered, with findings, ordered to
    rectify, penalties, and those not covered (the sample district when no files are given)."""
    settings = context.settings()
    if stored:
        with reading(context.engine(settings)) as conn:
            inst, found = storage.frames(conn, year=year)
            checked = register.register_frame(conn, year=year)
    else:
        inst, found, checked = read_register(
            institutions, findings, inspections, rules=load_rules(settings.rules_dir)
        )
    result = coverage(inst, checked, found, year)
    if format is Format.table:
        render.console().print(view(result))
    else:
        print(result.model_dump_json(indent=2))


def read_register(
    institutions: Path, findings: Path, inspections: Path, *, rules: RuleSet
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three files checked as an import checks them: normalised institutions, findings and
    register, or one InputError listing every problem of the three (findings naming a task
    the register lacks included)."""
    read = {path: read_raw(path) for path in (institutions, findings, inspections)}
    raise_problems(*(problems for _, problems in read.values()))
    raws = {path: frame for path, (frame, _) in read.items() if frame is not None}
    inst, inst_problems = validate_institutions(raws[institutions], file=str(institutions))
    found, found_problems = validate_findings(
        raws[findings], file=str(findings), rules=rules, known_uscc=inst["uscc"]
    )
    checked, register_problems = validate_inspections(
        raws[inspections],
        file=str(inspections),
        rules=rules,
        known_uscc=inst["uscc"],
        today=beijing_date(now()),
    )
    unknown = ProblemList()
    if not found_problems.total and not register_problems.total:
        unknown = unknown_task_references(
            found,
            checked[["task_id", "inspected_on"]],
            file=str(findings),
            rows=raws[findings].index.tolist(),
            column=reference_column(raws[findings]),
        )
    raise_problems(inst_problems, found_problems, register_problems, unknown)
    return inst, found, checked


def view(result: Coverage) -> Group:
    """The summary line, the tasks, and the institutions not covered, in Chinese."""
    tasks = Table(
        title=f"{result.year}年度 “双随机、一公开”抽查覆盖情况",
        caption=(
            f"抽查任务 {len(result.tasks)} 项，覆盖机构 {len(result.covered)} 家"
            f"（共 {result.institutions} 家），发现问题 {len(result.with_findings)} 家，"
            f"责令整改 {len(result.rectify)} 家，立案处罚 {len(result.penalty)} 家"
        ),
        box=box.SIMPLE_HEAD,
    )
    for name, justify in (
        ("任务编号", "left"),
        ("检查日期", "left"),
        ("检查机构", "right"),
        ("发现问题", "right"),
        ("责令整改", "right"),
        ("立案处罚", "right"),
    ):
        tasks.add_column(name, justify=justify)  # type: ignore[arg-type]
    for task in result.tasks:
        days = task.first_day.isoformat()
        if task.last_day != task.first_day:
            days += f" 至 {task.last_day.isoformat()}"
        tasks.add_row(
            task.task_id,
            days,
            str(task.institutions),
            str(task.with_findings),
            str(task.rectify),
            str(task.penalty),
        )
    parts: list[Table] = [tasks]
    for title, listed in (
        ("责令整改的机构", result.rectify),
        ("立案处罚的机构", result.penalty),
        ("未覆盖的机构（不含已注销）", result.not_covered),
    ):
        parts.append(_institutions(title, listed))
    return Group(*parts)


def _institutions(title: str, listed: list[Institution]) -> Table:
    table = Table(title=f"{title}：{len(listed)} 家", box=box.SIMPLE_HEAD)
    table.add_column("统一社会信用代码")
    table.add_column("机构名称")
    for one in listed:
        table.add_row(one.uscc, one.name)
    return table
