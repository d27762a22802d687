"""`credit-rating export`: a year's result as the supervisors' Excel workbook, or as CSV.

Only I/O lives here: the sheets and their safety (formulas neutralised, CSV with a BOM) are in
`service.ratings.exports`, which the API's `/v1/ratings/{year}/export.xlsx` uses too, so both
give the same file. Registered in `service.cli.commands`, whose wrapper reports NotFound (no
such year or revision) and a file that cannot be written as `error: …` and exit status 1.
"""

from __future__ import annotations

import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from scoring.i18n import _
from scoring.shipped import load_rules
from service.cli import context
from service.cli.options import Year
from service.core.database import reading
from service.core.errors import InvalidInput
from service.ratings import exports


class ExportFormat(StrEnum):
    xlsx = "xlsx"
    csv = "csv"


def export(
    year: Year,
    revision: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=_("This revision (a draft included) instead of the year's published result."),
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format", help=_("xlsx: summary, points and findings sheets; csv: the points sheet.")
        ),
    ] = ExportFormat.xlsx,
    out: Annotated[
        Path | None,
        typer.Option(
            help=_(
                "File or directory to write (default: the current directory, a Chinese file "
                "name with year and revision); - writes to standard output."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Export YEAR's published result (or --revision N) for supervisors: an Excel workbook
    (summary, points kept per indicator, findings that cost points) or CSV (UTF-8 with BOM)."""
    settings = context.settings()
    engine = context.engine(settings)
    try:
        with reading(engine) as conn:
            made = exports.snapshot_export(
                conn, year=year, revision=revision, rules=load_rules(settings.rules_dir)
            )
    finally:
        engine.dispose()
    data = made.xlsx() if format is ExportFormat.xlsx else made.csv()
    if out is not None and str(out) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = out or Path.cwd()
    if target.is_dir():
        target = target / made.filename(format.value)
    _write(target, data)
    s = made.snapshot
    print(
        _(
            "{path}: {year} revision {revision} ({status}), {institutions} institutions, "
            "{findings} findings"
        ).format(
            path=target,
            year=s.year,
            revision=s.revision,
            status=s.status,
            institutions=len(made.points.rows),
            findings=len(made.findings.rows),
        )
    )


def _write(target: Path, data: bytes) -> None:
    """Write all of `data` or nothing: a reader never opens half a workbook."""
    try:
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=".export-", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(data)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(name, 0o666 & ~umask)  # as a plain open() would have made it
            os.replace(name, target)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InvalidInput(
            _("cannot write {path}: {reason}").format(path=target, reason=exc.strerror or exc)
        ) from None
