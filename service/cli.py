"""The `credit-rating` command: rate a year, explain one institution's grade.

Thin by design: it reads files, calls the same scorer functions the service calls, and renders.
Any error goes to stderr with a non-zero exit status, and nothing is printed on stdout then, so
a script that pipes the output never mistakes half a result for a whole one.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from scoring.engine import rate as rate_district
from scoring.errors import ScoringError
from scoring.explain import explain as explain_one
from service import render
from service.files import read_inputs
from service.loading import RULES_DIR, SAMPLE_DIR, load_rules

app = typer.Typer(
    help="Credit ratings of subject-type training institutions (学科类校外培训机构信用评价).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

P = ParamSpec("P")
R = TypeVar("R")


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class Scale(StrEnum):
    four = "four"
    five = "five"


Year = Annotated[int, typer.Option(min=2000, max=2100, help="Rating year (calendar year).")]
Institutions = Annotated[
    Path,
    typer.Option(help="Institutions file (.csv, .json, .xlsx, .parquet).", show_default=False),
]
Findings = Annotated[
    Path, typer.Option(help="Findings file (.csv, .json, .xlsx, .parquet).", show_default=False)
]
Rules = Annotated[Path, typer.Option(help="Rules directory.", show_default=False)]
ScaleOpt = Annotated[Scale, typer.Option(help="Grade scale: four classes (default) or five.")]

SAMPLE_INSTITUTIONS = SAMPLE_DIR / "institutions.csv"
SAMPLE_FINDINGS = SAMPLE_DIR / "findings.csv"


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the scorer's errors into a message on stderr and exit status 1."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except ScoringError as exc:
            render.console(stderr=True).print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None

    return wrapper


@app.command()
@reports_errors
def rate(
    year: Year,
    institutions: Institutions = SAMPLE_INSTITUTIONS,
    findings: Findings = SAMPLE_FINDINGS,
    rules: Rules = RULES_DIR,
    scale: ScaleOpt = Scale.four,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Rate every institution for YEAR (the sample district when no files are given)."""
    ruleset = load_rules(rules)
    force = ruleset.in_force(year, scale.value)
    inst, found = read_inputs(institutions, findings, rules=ruleset)
    rating = rate_district(inst, found, force)
    if format is Format.json:
        print(render.as_json(rating, force))
    elif format is Format.csv:
        print(render.as_csv(rating), end="")
    else:
        out = render.console()
        out.print(render.rating_table(rating, force))
        out.print(render.grade_summary(rating, force))


@app.command()
@reports_errors
def explain(
    uscc: Annotated[str, typer.Argument(help="The institution's unified social credit code.")],
    year: Year,
    institutions: Institutions = SAMPLE_INSTITUTIONS,
    findings: Findings = SAMPLE_FINDINGS,
    rules: Rules = RULES_DIR,
    scale: ScaleOpt = Scale.four,
    format: Annotated[
        Format, typer.Option("--format", help="table (text) or json.")
    ] = Format.table,
) -> None:
    """Explain one institution's score and grade for YEAR, indicator by indicator."""
    ruleset = load_rules(rules)
    force = ruleset.in_force(year, scale.value)
    inst, found = read_inputs(institutions, findings, rules=ruleset)
    explanation = explain_one(inst, found, force, year, uscc.strip().upper())
    if format is Format.table:
        render.console().print(render.explanation_view(explanation))
    else:
        print(explanation.model_dump_json(indent=2))
