"""`credit-rating draw`: draw institutions for the next random inspections (双随机).

The same function as POST /v1/draws (`service.ratings.draws`), weights from
CREDIT_DRAW_WEIGHTS; the record is stored write-once and printed, in JSON exactly as
GET /v1/draws/{id} publishes it. Registered in `service.cli.commands`, whose wrapper reports
NotFound (no published year) and InvalidInput (a grade without a weight) as `error: …`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from scoring.i18n import _
from service.api.routes.draws import SEED, as_json
from service.cli import context, render
from service.cli.options import Format, Year
from service.core import clock
from service.core.database import writing
from service.core.errors import InvalidInput
from service.ratings import draws


def draw(
    year: Year,
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help=_("How many to draw."))],
    seed: Annotated[
        str | None,
        typer.Option(
            help=_(
                "The seed (1–128 printable ASCII characters, no spaces); default: 128 random "
                "bits from the operating system (secrets)."
            ),
            show_default=False,
        ),
    ] = None,
    by: Annotated[str, typer.Option(help=_("Who makes the draw."))] = "cli",
    format: Annotated[
        Format, typer.Option("--format", help=_("table (text) or json (the published record)."))
    ] = Format.table,
) -> None:
    """Draw COUNT institutions from YEAR's published grades, weighted by grade (closed ones
    never), store the record and print it (docs/draws.md: how anyone reruns it)."""
    if seed is not None and not re.fullmatch(SEED, seed):
        raise InvalidInput(_("--seed: 1–128 printable ASCII characters, no spaces"))
    settings = context.settings()
    engine = context.engine(settings)
    try:
        with writing(engine) as conn:
            record = draws.make_draw(
                conn,
                year=year,
                count=count,
                weights=settings.draw_weight_map,
                seed=seed,
                by=by,
                at=clock.now(),
            )
    finally:
        engine.dispose()
    if format is Format.json:
        print(as_json(record))
    else:
        _table(record)


def _table(record: dict[str, Any]) -> None:
    out = render.console()
    weights = ", ".join(f"{g}={w}" for g, w in record["weights"].items())
    quotas = ", ".join(f"{g}: {n}" for g, n in record["quotas"].items())
    out.print(
        _(
            "draw {id}: {drawn} of {population} institutions from {year} revision {revision} "
            "({hash})"
        ).format(
            id=record["id"],
            drawn=len(record["drawn"]),
            population=len(record["population"]),
            year=record["year"],
            revision=record["revision"],
            hash=record["snapshot_hash"],
        ),
        markup=False,
    )
    out.print(
        _("seed {seed} ({source}); weights {weights}").format(
            seed=record["seed"], source=record["seed_source"], weights=weights
        ),
        markup=False,
    )
    out.print(
        _("per grade: {quotas}; closed, never drawn: {closed}").format(
            quotas=quotas, closed=len(record["excluded"])
        ),
        markup=False,
    )
    for d in record["drawn"]:
        print(f"{d['grade']}\t{d['uscc']}\t{d['key']}")
