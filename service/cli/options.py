"""The options several commands share, declared once so that they read and check alike."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from scoring.i18n import _
from scoring.rules import MAX_YEAR


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


# Years before the measure are refused by the rules themselves, which say when it began.
Year = Annotated[int, typer.Option(min=1, max=MAX_YEAR, help=_("Rating year (calendar year)."))]
Institutions = Annotated[
    Path,
    typer.Option(help=_("Institutions file (.csv, .json, .xlsx, .parquet)."), show_default=False),
]
Findings = Annotated[
    Path, typer.Option(help=_("Findings file (.csv, .json, .xlsx, .parquet)."), show_default=False)
]
Rules = Annotated[Path, typer.Option(help=_("Rules directory."), show_default=False)]


# Checked by the rules in use (`RuleSet.in_force` names the scales they define), so a rules
# directory of one's own may define others.
Scale = Annotated[
    str | None,
    typer.Option(
        metavar="SCALE",
        help=_("Grade scale of the rules: four (the default) or five in the shipped measure."),
        show_default=False,
    ),
]

# A candidate rule set takes effect after the years it was fitted on: this applies its values
# to an earlier year's findings, to see what it would do.
AsOf = Annotated[
    dt.datetime | None,
    typer.Option(
        formats=["%Y-%m-%d"],
        help=_(
            "Rate with the values of the rules in force on this day (YYYY-MM-DD) instead of "
            "31 December of the year: a candidate rule set dated later, tried on this year."
        ),
        show_default=False,
    ),
]
