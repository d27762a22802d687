"""`credit-rating compute` and `credit-rating publish`: a year's draft and its publication from
the command line, the same functions as `POST /v1/ratings/{year}` and `.../publish`.

So that a supervisor can go from files to a published year, an export and the public page
without an HTTP client: import, compute, publish, export. Publishing signs the snapshot,
appends the anchor file and queues the delivery to the city platform exactly as the service
does, from the same configuration (CREDIT_*).
"""

from __future__ import annotations

from typing import Annotated

import typer

from scoring.i18n import _
from scoring.shipped import load_rules
from service.cli import context
from service.cli.options import Scale, Year
from service.core.database import writing
from service.core.settings import Settings
from service.ratings import publishing
from service.ratings.publicity import publicity
from service.ratings.snapshots import Snapshot


def compute(
    year: Year,
    scale: Scale = None,
    by: Annotated[str, typer.Option(help=_("Who computes it (recorded)."))] = "cli",
) -> None:
    """Compute YEAR's draft from the stored institutions and findings (nothing is published)."""
    settings = context.settings()
    with writing(context.engine(settings)) as conn:
        draft = publishing.compute_draft(
            conn,
            rules=load_rules(settings.rules_dir),
            year=year,
            scale=scale or settings.scale,
            by=by,
        )
    print(f"{draft.year}年度 第{draft.revision}版草稿已生成（{draft.content_hash}）")


def publish(
    year: Year,
    revision: Annotated[
        int | None,
        typer.Option(
            min=1, help=_("The draft to publish (default: the latest)."), show_default=False
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(help=_("Why: required for a correction."), show_default=False),
    ] = None,
    by: Annotated[str, typer.Option(help=_("Who publishes it (recorded)."))] = "cli",
) -> None:
    """Publish YEAR's draft as the official result (a second publication is a correction):
    signed, chained, queued for the city platform, and open to objections for the publicity
    period."""
    settings = context.settings()
    with writing(context.engine(settings)) as conn:
        done = publishing.publish(
            conn,
            year=year,
            revision=revision,
            reason=reason,
            by=by,
            sharing=settings.sharing,
            signing_key=settings.signing_key,
            anchor_file=settings.anchor_file,
        )
    print(_published(done, settings))


def _published(done: Snapshot, settings: Settings) -> str:
    line = f"{done.year}年度 第{done.revision}版已公示（{done.chain_hash}）"
    period = publicity(done, settings)
    if period is not None:
        line += f"；公示期至 {period.ends_on.isoformat()}，异议受理：{period.contact}"
    return line
