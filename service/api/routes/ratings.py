"""Ratings: compute a year's draft, publish it, read results and explanations, history, and the
public key that signs what is published."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.api.caches.responses import GENERATION, cached
from service.api.deps import (
    Anyone,
    EngineDep,
    Reader,
    Revision,
    RiskDep,
    RulesDep,
    SettingsDep,
    Supervisor,
    YearPath,
)
from service.api.keys import Principal
from service.api.problems import responses
from service.api.published import (
    EXPLAINERS,
    FULL_VIEW,
    GradeWriter,
    Page,
    institution_rating,
    page_of,
    read_cursor,
    write_cursor,
    year_json,
)
from service.api.schemas import (
    USCC,
    ComputeRequest,
    HistoryEntry,
    InstitutionRating,
    PublishRequest,
    RatingFull,
    RatingPublic,
    SnapshotPublic,
)
from service.core.database import reading, writing
from service.core.errors import NotConfigured, NotFound
from service.ratings import exports, integrity, publishing, snapshots
from service.ratings.publicity import publicity

router = APIRouter(prefix="/v1", tags=["ratings"])


def _visible(
    conn: Any, year: int, revision: int | None, who: Principal | None
) -> snapshots.Snapshot:
    """The snapshot the caller asked for; drafts only for supervisors and analysts."""
    if revision is None:
        found = snapshots.published(conn, year=year)
        assert found is not None
        return found
    if who is not None and who.role in EXPLAINERS:
        return snapshots.get(conn, year, revision)
    # Others are told the same of a draft as of a revision that does not exist: else anyone
    # could count the drafts.
    try:
        snap = snapshots.get(conn, year, revision)
    except NotFound:
        snap = None
    if snap is None or snap.status != "published":
        raise NotFound(f"no published revision {revision} of {year}")
    return snap


@router.post(
    "/ratings/{year}",
    status_code=201,
    response_model=SnapshotPublic,
    responses=responses(401, 403, 409, 422),
    summary="Compute the year's draft from the stored findings",
)
def compute(
    year: YearPath,
    who: Supervisor,
    engine: EngineDep,
    rules: RulesDep,
    settings: SettingsDep,
    body: Annotated[ComputeRequest | None, Body()] = None,
) -> SnapshotPublic:
    scale = (body.scale if body else None) or settings.scale
    with writing(engine) as conn:
        draft = publishing.compute_draft(conn, rules=rules, year=year, scale=scale, by=who.name)
    return SnapshotPublic.of(draft)


@router.post(
    "/ratings/{year}/publish",
    response_model=SnapshotPublic,
    responses=responses(401, 403, 404, 409, 422),
    summary="Publish a draft as the year's official result (a second publish is a correction)",
)
def publish(
    year: YearPath,
    who: Supervisor,
    engine: EngineDep,
    settings: SettingsDep,
    body: Annotated[PublishRequest | None, Body()] = None,
) -> SnapshotPublic:
    body = body or PublishRequest()
    with writing(engine) as conn:
        done = publishing.publish(
            conn,
            year=year,
            revision=body.revision,
            reason=body.reason,
            by=who.name,
            sharing=settings.sharing,
            signing_key=settings.signing_key,
            anchor_file=settings.anchor_file,
        )
    return SnapshotPublic.of(done, publicity(done, settings))  # the period it opens


@router.get(
    "/ratings/{year}",
    response_model=RatingFull | RatingPublic,
    responses=responses(401, 404, 409, 422),
    summary="The year's published result (or ?revision=N), streamed; pages with limit and cursor",
)
@cached(query=["cursor", "limit", "revision"])  # streamed: never kept whole, in fact
async def read_rating(
    request: Request,
    year: YearPath,
    who: Anyone,
    engine: EngineDep,
    risk: RiskDep,
    settings: SettingsDep,
    revision: Revision = None,
    limit: Annotated[
        int | None,
        Query(ge=1, le=100_000, description="At most this many institutions (a page)"),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Where the page starts: the `next_cursor` of the page before",
        ),
    ] = None,
) -> Response:
    """The institutions best score first (then by credit code), sent as they are written.

    Without `limit` and `cursor`, the whole year, as it always was. With either, a page:
    `limit` institutions at most, from after the `cursor` given, and a `next_cursor` member
    after them to ask for the next page with (null on the last one). A cursor is opaque
    text that names the year, revision and last row of its page; one from before a
    correction was published is refused (409: start again), as is one not written here (422).
    """
    entry = None
    if revision is None:
        generation = request.scope.get(GENERATION)
        if GENERATION not in request.scope:
            generation = await request.app.state.cache.generation()
        entry = await request.app.state.published.get(year, generation)
    if entry is not None:
        snap, rows = entry.snapshot, entry.rows
    else:
        snap, rows = await run_in_threadpool(_year_rows, engine, year, revision, who)
    paged = limit is not None or cursor is not None
    page = Page(read_cursor(cursor, snap) if cursor is not None else None, limit)
    shown, more = page_of(rows, page) if paged else (rows, False)
    meta = SnapshotPublic.of(snap, publicity(snap, settings))  # the period, for objections
    writer = GradeWriter(who is not None and who.role in FULL_VIEW, risk)
    next_cursor: str | bool | None = False
    if paged:
        next_cursor = write_cursor(snap, shown[-1]) if more and shown else None
    return StreamingResponse(
        year_json(meta, shown, writer, next_cursor), media_type="application/json"
    )


def _year_rows(
    engine: Any, year: int, revision: int | None, who: Principal | None
) -> tuple[snapshots.Snapshot, list[dict[str, Any]]]:
    with reading(engine) as conn:
        snap = _visible(conn, year, revision, who)
        return snap, snapshots.grades_of(conn, snap)


@router.get(
    "/ratings/{year}/revisions",
    response_model=list[SnapshotPublic],
    responses=responses(401, 403, 422),
    summary="Every revision of the year, drafts included",
)
def list_revisions(
    year: YearPath, who: Reader, engine: EngineDep, settings: SettingsDep
) -> list[SnapshotPublic]:
    with reading(engine) as conn:
        found = snapshots.revisions(conn, year=year)
    return [SnapshotPublic.of(s, publicity(s, settings)) for s in found]


# Declared before `/ratings/{year}/{uscc}`, which would otherwise take `export.xlsx` for a code.
@router.get(
    "/ratings/{year}/export.xlsx",
    response_class=Response,
    responses={
        200: {
            "description": "The workbook: summary, points per indicator, findings that cost "
            "points (see docs/exports.md)",
            "content": {exports.XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        **responses(401, 403, 404, 422),
    },
    summary="The year's published result (or ?revision=N) as an Excel workbook",
)
def export_xlsx(
    year: YearPath, who: Reader, engine: EngineDep, rules: RulesDep, revision: Revision = None
) -> Response:
    """For supervisors and analysts: sheets 概况 (grade counts, rules' version and hash,
    publication), 指标得分 (one row per institution, a column per indicator headed by its annex
    number and title) and 扣分记录 (each finding that cost points). A text cell that a
    spreadsheet would run as a formula is written with a leading `'`."""
    with reading(engine) as conn:
        made = exports.snapshot_export(conn, year=year, revision=revision, rules=rules)
    return Response(
        made.xlsx(),
        media_type=exports.XLSX_TYPE,
        headers={
            "Content-Disposition": exports.attachment(
                made.filename("xlsx"), made.ascii_filename("xlsx")
            ),
            "Cache-Control": "private, no-store",
        },
    )


@router.get(
    "/ratings/{year}/{uscc}",
    response_model=InstitutionRating,
    responses=responses(401, 404, 422),
    summary="One institution's rating, with its explanation for supervisors and analysts",
)
@cached(query=["revision"])
def read_institution_rating(
    year: YearPath,
    uscc: USCC,
    who: Anyone,
    engine: EngineDep,
    risk: RiskDep,
    rules: RulesDep,
    settings: SettingsDep,
    revision: Revision = None,
) -> InstitutionRating:
    with reading(engine) as conn:
        snap = _visible(conn, year, revision, who)
        row = snapshots.row_of(conn, snap, uscc)
    meta = SnapshotPublic.of(snap, publicity(snap, settings))
    return institution_rating(snap, meta, row, who, risk, rules)


@router.get(
    "/institutions/{uscc}/history",
    response_model=list[HistoryEntry],
    responses=responses(401, 422),
    summary="The institution's published grade in each year",
    tags=["institutions"],
)
@cached()
def history(uscc: USCC, who: Anyone, engine: EngineDep) -> list[HistoryEntry]:
    with reading(engine) as conn:
        return [HistoryEntry(**h) for h in snapshots.history(conn, uscc=uscc)]


@router.get(
    "/signing-key",
    summary="The public key that signs published snapshots (Ed25519)",
    responses=responses(404, 409),
)
def signing_key(who: Anyone, settings: SettingsDep) -> dict[str, str]:
    """A snapshot's `signature` is this key's Ed25519 signature of `credit-rating snapshot v1`,
    a newline, then the snapshot's `chain_hash` (UTF-8); `key_fingerprint` names the key."""
    if settings.signing_key is None:
        raise NotFound("snapshots are not signed here: no signing key is configured")
    try:
        key = integrity.load_signing_key(settings.signing_key).public_key()
    except NotConfigured:  # the reason names a server path: for the operator, not the caller
        raise NotConfigured("the signing key (CREDIT_SIGNING_KEY) cannot be used") from None
    return {
        "algorithm": "Ed25519",
        "fingerprint": integrity.fingerprint(key),
        "public_key": integrity.public_pem(key),
        "signed_message": integrity.SIGNED_PREFIX + "{chain_hash}",
    }
