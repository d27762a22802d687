"""`credit-rating compare`: who would change grade under a candidate rule set.

The step between `calibrate --out DIR` (or any amendment drafted as a rules directory) and
adopting it: the same year's records rated under the rules in force and under the candidate,
listing the institutions whose grade would change and how many move between each pair of
grades. A candidate's values take effect on a later day than the years it was fitted on, so
they are applied as of that day (`RuleSet.last_change_on`, or `--as-of`) to the year's
findings. Nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich import box
from rich.console import Group
from rich.table import Table

from scoring.compare import compare as compare_rules
from scoring.compare import grade_moves
from scoring.i18n import _
from scoring.input_files import read_inputs
from scoring.rules import RulesInForce
from scoring.shipped import SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS, load_rules
from service.cli import context, render
from service.cli.options import AsOf, Findings, Format, Institutions, Scale, Year
from service.core.database import reading
from service.ratings.exports import csv_text
from service.records import storage


def compare(
    year: Year,
    rules: Annotated[
        Path, typer.Option(help=_("The candidate rules directory (e.g. calibrate's DIR/rules)."))
    ],
    against: Annotated[
        Path | None,
        typer.Option(
            help=_("The rules in force (default: the configured rules)."), show_default=False
        ),
    ] = None,
    institutions: Institutions = SAMPLE_INSTITUTIONS,
    findings: Findings = SAMPLE_FINDINGS,
    stored: Annotated[
        bool,
        typer.Option("--stored", help=_("Rate the records in the database instead of files.")),
    ] = False,
    as_of: AsOf = None,
    scale: Scale = None,
    every: Annotated[
        bool, typer.Option("--all", help=_("List every institution, not only those that change."))
    ] = False,
    format: Annotated[
        Format, typer.Option("--format", help=_("table (text), json or csv."))
    ] = Format.table,
) -> None:
    """Rate YEAR under the rules in force and under a candidate rule set, and list who would
    change grade (the sample district when no files are given). Nothing is stored."""
    settings = context.settings()
    scale = scale or settings.scale
    current_rules = load_rules(against or settings.rules_dir)
    candidate = load_rules(rules)
    day = as_of.date() if as_of else max(candidate.last_change_on, dt.date(year, 12, 31))
    current = current_rules.in_force(year, scale)
    proposed = candidate.in_force(year, scale, as_of=day)
    if stored:
        with reading(context.engine(settings)) as conn:
            inst, found = storage.frames(conn, year=year)
    else:
        inst, found = read_inputs(institutions, findings, rules=current_rules)
    result = compare_rules(inst, found, current, proposed).sort_values("uscc", ignore_index=True)
    shown = result if every else result[result["changed"]]
    moves = grade_moves(result, [band.grade for band in current.bands])
    if format is Format.csv:
        print(csv_text(shown), end="")
    elif format is Format.json:
        print(
            json.dumps(
                _as_data(result, shown, moves, current, proposed, day), indent=2, ensure_ascii=False
            )
        )
    else:
        render.console().print(_view(result, shown, moves, current, proposed, day))


def _as_data(
    result: pd.DataFrame,
    shown: pd.DataFrame,
    moves: pd.DataFrame,
    current: RulesInForce,
    proposed: RulesInForce,
    day: dt.date,
) -> dict[str, object]:
    return {
        "year": current.year,
        "scale": current.scale.code,
        "current": {"version": current.version, "rules_hash": current.content_hash},
        "proposed": {
            "version": proposed.version,
            "rules_hash": proposed.content_hash,
            "as_of": day.isoformat(),
        },
        "institutions_rated": len(result),
        "changes": int(result["changed"].sum()),
        "moves": {str(g): {str(h): int(n) for h, n in moves.loc[g].items()} for g in moves.index},
        "institutions": [
            {
                **row,
                "score": int(row["score"]),
                "proposed_score": int(row["proposed_score"]),
                "changed": bool(row["changed"]),
            }
            for row in shown.astype(object).to_dict("records")
        ],
    }


def _view(
    result: pd.DataFrame,
    shown: pd.DataFrame,
    moves: pd.DataFrame,
    current: RulesInForce,
    proposed: RulesInForce,
    day: dt.date,
) -> Group:
    changes = int(result["changed"].sum())
    listing = Table(
        title=f"{current.year}年度 规则对比（不保存）· {current.scale.title}",
        caption=f"现行 {current.version} · 候选 {proposed.version}（按 {day.isoformat()} 起的"
        f"分值）· {len(result)} 家中等级变化 {changes} 家",
        box=box.SIMPLE_HEAD,
    )
    for name, justify in (
        ("统一社会信用代码", "left"),
        ("机构名称", "left"),
        ("现行得分", "right"),
        ("现行等级", "center"),
        ("候选得分", "right"),
        ("候选等级", "center"),
    ):
        listing.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in shown.sort_values(["score", "uscc"], ascending=[False, True]).itertuples():
        listing.add_row(
            str(row.uscc),
            str(row.name),
            str(row.score),
            str(row.grade),
            str(row.proposed_score),
            str(row.proposed_grade),
        )
    matrix = Table(title="等级迁移", caption="行：现行 · 列：候选", box=box.SIMPLE_HEAD)
    matrix.add_column("")
    for grade in moves.columns:
        matrix.add_column(str(grade), justify="right")
    for grade in moves.index:
        matrix.add_row(str(grade), *(str(n) for n in moves.loc[grade]))
    return Group(listing, matrix)
