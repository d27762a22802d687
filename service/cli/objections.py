"""`credit-rating objection file|list|resolve`: objections in a publicity period (公示期).

The same functions as /v1/objections (`service.ratings.objections`). `build` makes the
sub-app with the Typer class `service.cli.commands` gives it, so its commands report errors
like every other (`error: …` on stderr, exit status 1; a late objection names the deadline,
期限) without this module importing the one that registers it.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from scoring.i18n import _
from scoring.shipped import load_rules
from service.api.routes.objections import ObjectionPublic
from service.api.schemas import SnapshotPublic
from service.cli import context
from service.cli.options import Format, Year
from service.core import clock
from service.core.database import reading, writing
from service.ratings import objections
from service.ratings.objections import ObjectionStatus


class Decision(StrEnum):
    upheld = "upheld"
    rejected = "rejected"


def file(
    year: Year,
    uscc: Annotated[str, typer.Option(help=_("The institution objecting."))],
    text: Annotated[str, typer.Option(help=_("What the objection says."))],
    filed_by: Annotated[str, typer.Option("--filed-by", help=_("Who objects."))],
    finding: Annotated[
        str | None,
        typer.Option(help=_("The finding objected to (its id)."), show_default=False),
    ] = None,
    by: Annotated[str, typer.Option(help=_("Who records it."))] = "cli",
) -> None:
    """Record an objection to YEAR's published rating, within its publicity period."""
    settings = context.settings()
    engine = context.engine(settings)
    try:
        with writing(engine) as conn:
            row = objections.file(
                conn,
                settings=settings,
                year=year,
                uscc=uscc.strip().upper(),
                finding_id=finding,
                filed_by=filed_by,
                text=text,
                by=by,
                at=clock.now(),
            )
    finally:
        engine.dispose()
    print(
        _("objection {id} filed against {year} revision {revision}").format(
            id=row["id"], year=year, revision=row["revision"]
        )
    )


def list_(
    year: Annotated[int | None, typer.Option(help=_("Only this year's."))] = None,
    status: Annotated[ObjectionStatus | None, typer.Option(help=_("Only these."))] = None,
    format: Annotated[Format, typer.Option("--format", help=_("table or json."))] = Format.table,
) -> None:
    """List objections in the order filed."""
    engine = context.engine(context.settings())
    try:
        with reading(engine) as conn:
            rows = objections.listing(conn, year=year, status=status)
    finally:
        engine.dispose()
    if format is Format.json:
        shown = [ObjectionPublic(**r).model_dump(mode="json") for r in rows]
        print(json.dumps(shown, ensure_ascii=False, indent=2))
        return
    for r in rows:
        outcome = f"\t{r['resolution']}" if r["resolution"] else ""
        fix = f"\tcorrection r{r['correction_revision']}" if r["correction_revision"] else ""
        print(
            f"{r['id']}\t{r['year']} r{r['revision']}\t{r['uscc']}\t{r['finding_id'] or '-'}"
            f"\t{r['status']}\t{r['text']}{outcome}{fix}"
        )


def resolve(
    objection_id: Annotated[int, typer.Argument(min=1, help=_("The objection's id."))],
    decision: Annotated[Decision, typer.Option(help=_("upheld or rejected."))],
    reason: Annotated[str, typer.Option(help=_("Why."))],
    by: Annotated[str, typer.Option(help=_("Who resolves it."))] = "cli",
) -> None:
    """Uphold (revoke its finding, compute a correction draft) or reject, with a reason."""
    settings = context.settings()
    engine = context.engine(settings)
    try:
        with writing(engine) as conn:
            done = objections.resolve(
                conn,
                objection_id=objection_id,
                upheld=decision is Decision.upheld,
                reason=reason,
                rules=load_rules(settings.rules_dir),
                by=by,
                at=clock.now(),
            )
    finally:
        engine.dispose()
    print(_("objection {id} {status}").format(id=objection_id, status=done.objection["status"]))
    if done.correction is not None:
        s = SnapshotPublic.of(done.correction)
        print(
            _(
                "correction draft: {year} revision {revision} ({reason}); publish it with "
                "`credit-rating publish --year {year}` (or `POST /v1/ratings/{year}/publish`)"
            ).format(year=s.year, revision=s.revision, reason=s.reason)
        )


def build(typer_class: type[typer.Typer]) -> typer.Typer:
    """The `objection` sub-app, made with the registering module's Typer class."""
    sub = typer_class(
        help=_("Objections in a publicity period (公示期): file, list, resolve."),
        no_args_is_help=True,
    )
    sub.command(
        "file",
        help=_("Record an objection to YEAR's published rating, within its publicity period."),
    )(file)
    sub.command("list", help=_("List objections in the order filed."))(list_)
    sub.command(
        "resolve",
        help=_("Uphold (revoke its finding, compute a correction draft) or reject, with a reason."),
    )(resolve)
    return sub
