"""The `credit-rating` command: rate, explain, import, publish's checks, keys, sharing, serving.

Thin by design: it reads files, calls the same functions the HTTP service calls, and renders.
Every command fails the same way, in one place (`_reports_errors`, applied to each command as
it is registered): a message on stderr and exit status 1, never a traceback, and nothing on
stdout, so a script that pipes the output never mistakes half a result for a whole one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from typer import rich_utils
from typer.core import TyperGroup
from typer.models import CommandFunctionType

from scoring.errors import ScoringError
from scoring.i18n import _
from scoring.shipped import RULES_DIR, SAMPLE_FINDINGS, SAMPLE_INSTITUTIONS
from service.cli.options import AsOf, Findings, Format, Institutions, Rules, Scale, Year
from service.core.errors import InvalidInput, NotConfigured, NotFound, ServiceError

if TYPE_CHECKING:
    from typer import _click as click  # the Click Typer builds its commands with

    from service.api.keys import Role

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str) -> NoReturn:
    """End the command: `message` on stderr (as plain text, never markup), exit status 1."""
    from service.cli import render

    render.console(stderr=True).print(_("error: {message}").format(message=message), markup=False)
    raise typer.Exit(1)


def _reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn every error a person can act on into `fail`."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (ScoringError, ServiceError) as exc:
            fail(str(exc))
        except Exception as exc:
            if not _is_database_error(exc):
                raise
            cause = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()
            fail(
                _("the database refused or could not be reached: {cause}").format(
                    cause=cause[0] if cause else exc
                )
            )

    return wrapper


def _is_database_error(exc: Exception) -> bool:
    """Whether `exc` is SQLAlchemy's: only a command that imported SQLAlchemy can raise one, so
    a command that never did (`rate`) does not import it just to catch nothing."""
    errors = sys.modules.get("sqlalchemy.exc")
    return errors is not None and isinstance(exc, errors.SQLAlchemyError)


# Typer's own words in the language of the help (Click's "Usage:" and its text for --help
# stay as Click writes them).
rich_utils.ARGUMENTS_PANEL_TITLE = _("Arguments")
rich_utils.OPTIONS_PANEL_TITLE = _("Options")
rich_utils.COMMANDS_PANEL_TITLE = _("Commands")
rich_utils.ERRORS_PANEL_TITLE = _("Error")
rich_utils.DEFAULT_STRING = _("[default: {}]")
rich_utils.REQUIRED_LONG_STRING = _("[required]")


class _Commands(typer.Typer):
    """A Typer whose every command reports errors through `_reports_errors`."""

    def command(
        self, *args: Any, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        register = super().command(*args, **kwargs)

        def decorate(function: CommandFunctionType) -> CommandFunctionType:
            register(_reports_errors(function))
            return function

        return decorate


def _command(name: str, help: str, module: str, function: str) -> Callable[[], click.Command]:
    """Loads command `name` from `function` of `module` when it is first asked for."""

    def load() -> click.Command:
        from importlib import import_module

        from typer.main import get_command_from_info

        one = _Commands()
        one.command(name, help=help)(getattr(import_module(module), function))
        return get_command_from_info(
            one.registered_commands[0],
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
        )

    return load


def _objection() -> click.Command:
    from typer.main import get_group

    from service.cli.objections import build

    group = get_group(build(_Commands))
    group.name = "objection"
    return group


def _keys() -> click.Command:
    global Role  # what `keys create` is annotated with, resolved as its command is built
    from typer.main import get_group

    from service.api.keys import Role

    group = get_group(keys_app)
    group.name = "keys"
    return group


_LAZY: dict[str, Callable[[], click.Command]] = {
    "calibrate": _command(
        "calibrate",
        _(
            "Calibrate the score against serious outcomes the next year: metrics on the held-out "
            "year, proposed points and grade cut-offs; with --out, a candidate rule set."
        ),
        "service.cli.calibrate",
        "calibrate",
    ),
    "compare": _command(
        "compare",
        _(
            "Rate YEAR under the rules in force and under a candidate rule set, and list who "
            "would change grade (the sample district when no files are given). Nothing is stored."
        ),
        "service.cli.compare",
        "compare",
    ),
    "compute": _command(
        "compute",
        _("Compute YEAR's draft from the stored institutions and findings (nothing is published)."),
        "service.cli.publish",
        "compute",
    ),
    "publish": _command(
        "publish",
        _(
            "Publish YEAR's draft as the official result (a second publication is a correction): "
            "signed, chained, queued for the city platform, and open to objections for the "
            "publicity period."
        ),
        "service.cli.publish",
        "publish",
    ),
    "export": _command(
        "export",
        _(
            "Export YEAR's published result (or --revision N) for supervisors: an Excel workbook "
            "(summary, points kept per indicator, findings that cost points) or CSV (UTF-8 with "
            "BOM)."
        ),
        "service.cli.export",
        "export",
    ),
    "coverage": _command(
        "coverage",
        _(
            "YEAR's inspection coverage: tasks, institutions covered, with findings, ordered to "
            "rectify, penalties, and those not covered (the sample district when no files are "
            "given)."
        ),
        "service.cli.coverage",
        "coverage_command",
    ),
    "draw": _command(
        "draw",
        _(
            "Draw COUNT institutions from YEAR's published grades, weighted by grade (closed ones "
            "never), store the record and print it (docs/draws.md: how anyone reruns it)."
        ),
        "service.cli.draw",
        "draw",
    ),
    "objection": _objection,
    "keys": _keys,
}
"""Commands whose modules import the service (SQLAlchemy, FastAPI, scikit-learn): imported
only when the command is run or listed, so that `rate` starts with the engine's imports."""

_ORDER = (
    "rate",
    "explain",
    "import",
    "verify",
    "evaluate",
    "calibrate",
    "compare",
    "compute",
    "publish",
    "export",
    "coverage",
    "draw",
    "serve",
    "share",
    "objection",
    "keys",
)
"""The commands in the order `credit-rating --help` lists them."""


class _LazyGroup(TyperGroup):
    """The command group, loading each command of `_LAZY` when first asked for."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY:
            self.add_command(_LAZY[cmd_name](), cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for name in _LAZY:
            self.get_command(ctx, name)
        known = super().list_commands(ctx)
        return [n for n in _ORDER if n in known] + [n for n in known if n not in _ORDER]


app = _Commands(
    cls=_LazyGroup,
    help=_("Credit ratings of subject-type training institutions (学科类校外培训机构信用评价)."),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command(
    help=_("Rate every institution for YEAR (the sample district when no files are given).")
)
def rate(
    year: Year,
    institutions: Institutions = SAMPLE_INSTITUTIONS,
    findings: Findings = SAMPLE_FINDINGS,
    rules: Rules = RULES_DIR,
    scale: Scale = None,
    format: Annotated[Format, typer.Option("--format", help=_("Output format."))] = Format.table,
) -> None:
    # Imported here: only what rating from files needs (no database, web or calibration).
    from rich.console import Console

    from scoring.engine import rate as rate_district
    from scoring.input_files import read_inputs
    from scoring.shipped import load_rules
    from scoring.standing import marked, rated_part
    from service.cli import bulk
    from service.cli.bulk import ENGINE_FINDING_COLUMNS, RATED_COLUMNS
    from service.cli.stages import steps

    ruleset = load_rules(rules)
    force = ruleset.in_force(year, scale)
    progress = Console(stderr=True, markup=False, emoji=False, highlight=False)
    with steps(progress) as shown:  # on a terminal only
        files = f"{institutions.name}, {findings.name}"
        shown.step(_("reading and checking {files}").format(files=files))
        # Every column is checked; only those the rating reads are kept (the findings' ids,
        # sources, references and notes are let go as soon as they are checked).
        inst, found = read_inputs(
            institutions, findings, rules=ruleset, keep=(RATED_COLUMNS, ENGINE_FINDING_COLUMNS)
        )
        shown.step(_("rating {count:,} institutions").format(count=len(inst)))
        # Closed institutions are rated too and their rows left out after: the same rows as
        # rating the others, without copying the findings to leave out the closed ones'.
        every = rate_district(inst[["uscc", "name"]], found, force)
        del found
        rating, split = rated_part(every, inst)
        del every, inst
        rating = marked(rating, split)
        del split
        if format is not Format.table:
            shown.step(_("writing {format}").format(format=format.value), total=len(rating))
            if bulk.write(rating, force, format.value, shown.advance):
                return
    from service.cli import render

    if format is Format.json:
        print(render.as_json(rating, force))
    elif format is Format.csv:
        print(render.as_csv(rating), end="")
    else:
        out = render.console()
        out.print(render.rating_table(rating, force))
        out.print(render.grade_summary(rating, force))


@app.command(help=_("Explain one institution's score and grade for YEAR, indicator by indicator."))
def explain(
    uscc: Annotated[str, typer.Argument(help=_("The institution's unified social credit code."))],
    year: Year,
    institutions: Institutions = SAMPLE_INSTITUTIONS,
    findings: Findings = SAMPLE_FINDINGS,
    rules: Rules = RULES_DIR,
    scale: Scale = None,
    format: Annotated[
        Format, typer.Option("--format", help=_("table (text) or json."))
    ] = Format.table,
) -> None:
    from scoring.explain import explain as explain_one
    from scoring.input_files import read_inputs
    from scoring.lift import lift
    from scoring.shipped import load_rules
    from scoring.standing import standing
    from service.cli import render

    ruleset = load_rules(rules)
    force = ruleset.in_force(year, scale)
    inst, found = read_inputs(institutions, findings, rules=ruleset)
    split = standing(inst, found)
    code = split.rated_only(uscc.strip().upper())
    explanation = explain_one(split.rated, split.findings, force, year, code)
    lifted = lift(explanation, force.bands)
    if format is Format.table:
        out = render.console()
        out.print(render.explanation_view(explanation))
        out.print(render.lift_view(lifted))
    else:
        print(
            json.dumps(
                {**explanation.model_dump(mode="json"), "lift": lifted.model_dump(mode="json")},
                ensure_ascii=False,
                indent=2,
            )
        )


@app.command(
    "import", help=_("Import institution and finding files into the database, all or nothing.")
)
def import_(
    paths: Annotated[list[Path], typer.Argument(help=_("Institution and/or finding files."))],
    by: Annotated[str, typer.Option(help=_("Who records this import."))] = "cli",
) -> None:
    from scoring.shipped import load_rules
    from service.cli import context, render
    from service.records.importing import import_files

    settings = context.settings()
    engine = context.engine(settings)
    summary = import_files(engine, paths, rules=load_rules(settings.rules_dir), by=by)
    print(
        _(
            "institutions: {institutions_added} added, {institutions_updated} updated; "
            "findings: {findings_added} added, {findings_unchanged} already on record"
        ).format(
            institutions_added=summary.institutions_added,
            institutions_updated=summary.institutions_updated,
            findings_added=summary.findings_added,
            findings_unchanged=summary.findings_unchanged,
        )
        + (
            _("; inspections: {added} added, {unchanged} already on record").format(
                added=summary.inspections_added, unchanged=summary.inspections_unchanged
            )
            if summary.inspections_added or summary.inspections_unchanged
            else ""
        )
    )
    warn = render.console(stderr=True)
    for warning in summary.warnings:
        warn.print(_("warning: {warning}").format(warning=warning), markup=False)
    if summary.warnings_total > len(summary.warnings):
        more = summary.warnings_total - len(summary.warnings)
        warn.print(_("warning: … and {count} more").format(count=more), markup=False)


@app.command(
    help=_(
        "Check every snapshot: content hashes, the hash chain, each signature (with the key of "
        "CREDIT_SIGNING_KEY and any --public-key) and the chain head recorded in "
        "CREDIT_ANCHOR_FILE; exit 1 naming any altered or missing snapshot."
    )
)
def verify(
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help=_(
                "Also accept signatures by this Ed25519 public key (PEM), e.g. a retired one; "
                "repeatable."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    from service.cli import context
    from service.core.database import reading
    from service.ratings import integrity

    settings = context.settings()
    keys_given = [integrity.load_public_key(path) for path in public_key or []]
    if settings.signing_key is not None:
        keys_given.append(integrity.load_signing_key(settings.signing_key).public_key())
    engine = context.engine(settings)
    with reading(engine) as conn:
        found = integrity.check(conn, public_keys=keys_given, anchor_file=settings.anchor_file)
    notes = "".join("\n" + _("note: {note}").format(note=note) for note in found.notes)
    if found.problems:
        fail(_("snapshots were altered:") + "\n" + "\n".join(found.problems) + notes)
    signed = (
        _("; {count} signature(s) checked").format(count=found.signed)
        if keys_given
        else _("; {count} signed (not checked)").format(count=found.signed)
    )
    print(
        _("{count} snapshot(s) verified: every content hash and the hash chain match").format(
            count=found.snapshots
        )
        + (signed if found.signed else "")
        + notes
    )


@app.command(
    help=_(
        "Dry run: rate YEAR from the stored records under RULES and compare each grade with the "
        "published one. Nothing is stored."
    )
)
def evaluate(
    year: Year,
    rules: Annotated[
        Path | None,
        typer.Option(
            help=_("A candidate rules directory (default: the configured rules)."),
            show_default=False,
        ),
    ] = None,
    scale: Scale = None,
    as_of: AsOf = None,
    format: Annotated[
        Format, typer.Option("--format", help=_("table (text) or json."))
    ] = Format.table,
) -> None:
    from scoring.shipped import load_rules
    from service.api.schemas import EvaluateResponse
    from service.cli import context, render
    from service.core.database import reading
    from service.ratings.dry_run import dry_run

    settings = context.settings()
    force = load_rules(rules or settings.rules_dir).in_force(
        year, scale or settings.scale, as_of=as_of.date() if as_of else None
    )
    with reading(context.engine(settings)) as conn:
        result = dry_run(conn, force=force)
    if format is Format.table:
        render.console().print(render.dry_run_table(result))
    else:
        print(EvaluateResponse.of(result).model_dump_json(indent=2))


keys_app = _Commands(
    help=_("API keys: create (shown once), list, revoke; and the key that signs publications."),
    no_args_is_help=True,
)


@keys_app.command(
    "signing",
    help=_(
        "Create the Ed25519 key that signs published snapshots (a file of mode 0600, never "
        "overwritten; it is never stored in the database) and print its public key."
    ),
)
def keys_signing(
    path: Annotated[
        Path | None,
        typer.Option(
            help=_("Where to write it (default: CREDIT_SIGNING_KEY)."), show_default=False
        ),
    ] = None,
) -> None:
    from service.cli import context
    from service.ratings import integrity

    target = path or context.settings().signing_key
    if target is None:
        raise NotConfigured(_("give --path, or set CREDIT_SIGNING_KEY to where the key goes"))
    public = integrity.create_signing_key(target).public_key()
    print(
        _("signing key written to {path} (keep it secret; point CREDIT_SIGNING_KEY to it)").format(
            path=target
        )
    )
    print(_("fingerprint: {fingerprint}").format(fingerprint=integrity.fingerprint(public)))
    print(integrity.public_pem(public), end="")


@keys_app.command(
    "create",
    help=_("Create a key and print it; only its hash is stored, so it cannot be shown again."),
)
def keys_create(
    role: Annotated[Role, typer.Option(help=_("supervisor, sharing or analyst."))],
    name: Annotated[str, typer.Option(help=_("Who or what holds the key."))],
) -> None:
    from service.api import keys
    from service.cli import context
    from service.core.database import writing

    with writing(context.engine(context.settings())) as conn:
        print(keys.create(conn, role=role, name=name))


@keys_app.command(
    "list",
    help=_("List keys (id, name, role, prefix, created, revoked), never the keys themselves."),
)
def keys_list() -> None:
    from service.api import keys
    from service.cli import context
    from service.core.database import reading

    with reading(context.engine(context.settings())) as conn:
        for k in keys.listing(conn):
            revoked = (
                _("revoked {day}").format(day=f"{k['revoked_at']:%Y-%m-%d}")
                if k["revoked_at"]
                else _("active")
            )
            print(f"{k['id']}\t{k['name']}\t{k['role']}\t{k['prefix']}…\t{revoked}")


@keys_app.command("revoke", help=_("Revoke a key: it stops working at once."))
def keys_revoke(
    key_id: Annotated[int, typer.Argument(help=_("The key's id (see keys list)."))],
) -> None:
    from service.api import keys
    from service.cli import context
    from service.core.database import writing

    with writing(context.engine(context.settings())) as conn:
        if not keys.revoke(conn, key_id=key_id):
            raise NotFound(_("no active key with id {id}").format(id=key_id))
    print(_("key {id} revoked").format(id=key_id))


@app.command(
    help=_("Serve the HTTP API with uvicorn (settings from CREDIT_* environment variables).")
)
def serve(
    workers: Annotated[int, typer.Option(min=1, max=64, help=_("Worker processes."))] = 1,
    local: Annotated[
        bool, typer.Option(help=_("Local use: load the sample district, print a supervisor key."))
    ] = False,
) -> None:
    import uvicorn

    from scoring.shipped import SAMPLE_INSPECTIONS, load_rules
    from service.api import keys
    from service.api.keys import Role
    from service.cli import context
    from service.core.database import reading, writing
    from service.ratings.risk import load_risk
    from service.records import storage
    from service.records.importing import import_files

    settings = context.settings()
    if settings.calibration_dir is not None:  # refused here as `error: …`, not in a traceback
        load_risk(settings.calibration_dir, load_rules(settings.rules_dir))
    engine = context.engine(settings)
    if local:
        if not settings.is_sqlite or settings.host not in ("127.0.0.1", "localhost", "::1"):
            raise InvalidInput(_("--local is only for the embedded SQLite database on loopback"))
        with reading(engine) as conn:
            empty = not storage.known_usccs(conn)
        if empty:
            import_files(
                engine,
                [SAMPLE_INSTITUTIONS, SAMPLE_FINDINGS, SAMPLE_INSPECTIONS],
                rules=load_rules(settings.rules_dir),
                by="sample",
            )
        with writing(engine) as conn:
            key = keys.create(conn, role=Role.SUPERVISOR, name="local")
    base = f"http://{settings.host}:{settings.port}"
    print(
        _("credit-rating: API docs at {base}/docs (database {database})").format(
            base=base, database=settings.database_shown
        )
    )
    if local:
        print(_("local supervisor key (shown once): {key}").format(key=key))
        print(
            _('  try: curl -H "X-API-Key: {key}" -X POST {base}/v1/ratings/2023').format(
                key=key, base=base
            )
        )
    engine.dispose()
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level="warning",
    )


@app.command(
    help=_("Deliver pending batches to the city platform; exit 0 only when all are delivered.")
)
def share(
    year: Annotated[int | None, typer.Option(help=_("Only this year's batches."))] = None,
    status: Annotated[
        bool, typer.Option("--status", help=_("Show every batch; send nothing."))
    ] = False,
    retry: Annotated[
        str | None, typer.Option("--retry", metavar="BATCH", help=_("Re-queue a dead batch."))
    ] = None,
) -> None:
    from service.cli import context, render
    from service.core.database import reading, writing
    from service.sharing import delivery, outbox

    settings = context.settings()
    engine = context.engine(settings)
    if retry is not None:
        with writing(engine) as conn:
            outbox.requeue(conn, batch=retry)
        print(
            _("batch {batch} re-queued; run `credit-rating share` to send it").format(batch=retry)
        )
        return
    if status:
        with reading(engine) as conn:
            render.console().print(render.delivery_table(outbox.status(conn, year=year)))
        return
    with reading(engine) as conn:
        todo = [b for b in outbox.status(conn, year=year) if b["state"] == "pending"]
    with render.progress(len(todo)) as advance:
        report = delivery.deliver(engine, settings, year=year, progress=advance)
    print(
        _("delivered {delivered}, dead {dead}, still pending {pending}").format(
            delivered=len(report.delivered), dead=len(report.dead), pending=len(report.pending)
        )
    )
    if not report.complete:
        fail(
            _("not everything was delivered: see `credit-rating share --status`")
            + (_(" (dead batches need `--retry BATCH` once fixed)") if report.dead else "")
        )
