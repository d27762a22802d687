"""Published years in memory: lookups and whole years answered without a query.

A published snapshot never changes (triggers refuse any change to it), but which revision is a
year's published one does: a correction publishes a newer one. So a year's rows are kept here
with the snapshot they belong to, and served only after the database was asked, since the last
commit anywhere, which revision is the published one: the `ReadCache` generation (SQLite's
`PRAGMA data_version`, PostgreSQL's `pg_current_snapshot()`) is read first, and a year is
served for a generation only once a query begun after that reading confirmed its snapshot. A
correction is therefore seen by the very next request, as without memory; and when the
generation cannot be read (PostgreSQL unreachable), nothing is served from here.

What is kept: each row (as `snapshots.grades_of` reads it) and, for a snapshot that stores its
explanations in parts (`scoring.explain_parts`), each row's own parts, a few hundred bytes,
from which an explanation is written without a query; an explanation stored whole (snapshots
before migration 0007, kilobytes each) is read by its primary key when asked for. All within
`published_memory` bytes (`CREDIT_PUBLISHED_MEMORY`, counting `ROW_OVERHEAD` per row and the
own parts' length); the least recently used year is dropped first, and a year larger than the
whole budget is never kept (it is read from the database).

`FastLookups` answers `GET /v1/ratings/{year}/{uscc}` (no query) for a year kept here, before
FastAPI's routing and dependencies, which cost many times the lookup: with the very answer the
route gives (the same function builds it, `institution_rating`), under the same access rules
(a key must be known and not revoked, and decides what is shown). Anything else, or anything
it is unsure of (a query string, a body, an unknown key, a code not in the year, a year not
kept), goes on to the route.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gc
import json
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from scoring import uscc as uscc_check
from scoring.errors import ScoringError
from scoring.hashing import quoted
from scoring.lift import Explained, lift
from scoring.rules import MAX_YEAR, MIN_YEAR, RuleSet, RulesInForce
from service.api.caches.memory import ReadCache
from service.api.caches.responses import GENERATION
from service.api.deps import LOOKED_UP, find_principal
from service.api.keys import Principal, Role
from service.api.schemas import GradeFull, GradePublic, InstitutionRating, SnapshotPublic
from service.core.database import BUSY_TIMEOUT_MS, reading
from service.core.errors import Conflict, InvalidInput
from service.core.settings import Settings
from service.core.tables import snapshot_rows
from service.ratings import snapshots
from service.ratings.publicity import publicity
from service.ratings.risk import Risk, RiskModel

FULL_VIEW = (Role.SUPERVISOR, Role.ANALYST, Role.SHARING)
EXPLAINERS = (Role.SUPERVISOR, Role.ANALYST)

EXPLANATION = "SELECT explanation FROM snapshot_rows WHERE snapshot_id = ? AND uscc = ?"

ROW_OVERHEAD = 900
"""Bytes counted per row kept, besides its explanation's own parts (a dict of nine values)."""


@dataclass
class PublishedYear:
    """A year's published snapshot and its rows (but their explanations), best first
    (`snapshots.grades_of`) and by code; with the rows' own parts of their explanations when
    the snapshot stores them in parts."""

    snapshot: snapshots.Snapshot
    rows: list[dict[str, Any]]
    by_uscc: dict[str, dict[str, Any]]
    size: int
    owns: dict[str, str] | None = None  # each row's own parts, by code
    writers: dict[bool, GradeWriter] = field(default_factory=dict)  # by full view, once
    checked: Hashable | None = None  # the generation at which it was confirmed published
    meta: bytes | None = None  # its SnapshotPublic JSON, made once with the service's settings
    force: RulesInForce | None = None  # the rules in force for the year, once


@dataclass
class PublishedYears:
    """The published years kept in memory (see the module docstring)."""

    engine: Engine
    budget: int
    _years: OrderedDict[int, PublishedYear] = field(default_factory=OrderedDict)
    _too_big: set[int] = field(default_factory=set)  # snapshot ids never kept
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    _sqlite: sqlite3.Connection | None = None
    _sqlite_lock: threading.Lock = field(default_factory=threading.Lock)

    async def get(self, year: int, generation: Hashable | None) -> PublishedYear | None:
        """`year`'s published snapshot, confirmed the published one since `generation` was
        read; None when it is not to be served from memory (no generation, none published,
        over the budget)."""
        if generation is None or self.budget <= 0:
            return None
        known = self._years.get(year)
        if known is not None and known.checked == generation:
            self._years.move_to_end(year)
            return known
        lock = self._locks.setdefault(year, asyncio.Lock())
        async with lock:  # one confirmation (or load) at a time per year
            known = self._years.get(year)
            if known is not None and known.checked == generation:
                return known
            found = await run_in_threadpool(self._confirm, year, known)
            if found is None:
                self._years.pop(year, None)
                return None
            found.checked = generation  # the query began after `generation` was read
            if found is not known:
                self._keep(year, found)
            self._years.move_to_end(year)
            return found

    def _read_sqlite(self, entry: PublishedYear, uscc: str) -> str:
        if self._sqlite is None:
            self._sqlite = sqlite3.connect(
                f"file:{self.engine.url.database}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        rows = self._sqlite.execute(EXPLANATION, (entry.snapshot.id, uscc)).fetchall()
        text: str = rows[0][0]
        return text

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    def _keep(self, year: int, entry: PublishedYear) -> None:
        self._years.pop(year, None)
        while self._years and sum(y.size for y in self._years.values()) + entry.size > self.budget:
            self._years.popitem(last=False)  # the least recently used
        self._years[year] = entry

    def _confirm(self, year: int, known: PublishedYear | None) -> PublishedYear | None:
        """In a thread: the year's published snapshot (`known` when it still is), loaded."""
        with reading(self.engine) as conn:
            snap = snapshots.published(conn, year=year, required=False)
            if snap is None or snap.id in self._too_big:
                return None
            if known is not None and known.snapshot.id == snap.id:
                return known
            loaded = self._load(conn, snap)
        if loaded is not None:
            # The year lives as long as it is kept: tens of thousands of objects that every
            # full collection would walk again, a pause for every request under way (as at
            # start-up, `service.api.app.settled`).
            gc.collect()
            gc.freeze()
        return loaded

    def _load(self, conn: Any, snap: snapshots.Snapshot) -> PublishedYear | None:
        rows = snapshots.grades_of(conn, snap)
        owns = None
        if snap.explanation_parts is not None:
            owns = {
                uscc: own
                for uscc, own in conn.execute(
                    select(snapshot_rows.c.uscc, snapshot_rows.c.explanation).where(
                        snapshot_rows.c.snapshot_id == snap.id
                    )
                )
            }
        size = ROW_OVERHEAD * len(rows) + sum(map(len, (owns or {}).values()))
        if size > self.budget:
            self._too_big.add(snap.id)
            return None
        return PublishedYear(
            snapshot=snap,
            rows=rows,
            by_uscc={r["uscc"]: r for r in rows},
            size=size,
            owns=owns,
        )

    def explanation(self, entry: PublishedYear, uscc: str) -> str:
        """The row's stored explanation (a published snapshot's rows never change, so no
        commit can make it another). Called in a thread; on SQLite, read by key on a
        read-only connection of its own (tens of microseconds)."""
        if self.engine.dialect.name == "sqlite" and self.engine.url.database not in (
            None,
            "",
            ":memory:",
        ):
            with self._sqlite_lock:  # one connection, used from the thread pool's threads
                return self._read_sqlite(entry, uscc)
        with reading(self.engine) as conn:
            found: str = conn.execute(
                select(snapshot_rows.c.explanation).where(
                    snapshot_rows.c.snapshot_id == entry.snapshot.id,
                    snapshot_rows.c.uscc == uscc,
                )
            ).scalar_one()
        return found


# One institution -------------------------------------------------------------------------


def risks(risk: RiskModel | None, rows: Sequence[Mapping[str, Any]]) -> list[Risk | None]:
    """The calibrated risk of each row's score; None for each without a calibrator."""
    if risk is None:
        return [None] * len(rows)
    return list(risk.of([row["score"] for row in rows]))


def institution_rating(
    snap: snapshots.Snapshot,
    meta: SnapshotPublic,
    row: Mapping[str, Any],
    who: Principal | None,
    risk: RiskModel | None,
    rules: RuleSet,
    force: RulesInForce | None = None,
) -> InstitutionRating:
    """`GET /v1/ratings/{year}/{uscc}`'s answer: the grade, all of the row for the full view,
    the explanation (from the stored `row`) and what lifts it for explainers.
    `force`: `rules.in_force(snap.year, snap.scale)` when the caller has it already."""
    full = who is not None and who.role in FULL_VIEW
    if who is not None and who.role in EXPLAINERS:
        explained = snapshots.explained(snap, row)
        # What lifts it is advice computed now, from the bands the snapshot was rated on: only
        # while the rules in force are those rules (never stored, so no hash changes).
        force = force or in_force(rules, snap)
        same = force is not None and force.content_hash == snap.rules_hash
        return InstitutionRating(
            snapshot=meta,
            rating=GradeFull.of(row, risks(risk, [row])[0]),
            explanation=explained,
            lift=lift(explained, force.bands) if force is not None and same else None,
        )
    rating = GradeFull.of(row, risks(risk, [row])[0]) if full else GradePublic.of(row)
    return InstitutionRating(snapshot=meta, rating=rating)


def in_force(rules: RuleSet, snap: snapshots.Snapshot) -> RulesInForce | None:
    """The rules in force for the snapshot's year and scale, or None when the configured rules
    no longer rate it (say, its scale was removed): an explanation is then shown without what
    lifts it, never refused."""
    try:
        return rules.in_force(snap.year, snap.scale)
    except ScoringError:
        return None


# A whole year ------------------------------------------------------------------------------

CHUNK_ROWS = 2_000
"""Rows written to one piece of a streamed year."""


PLAIN_JSON = re.compile(r'(?:"[A-Za-z0-9_.-]*"|[\[\]{}0-9:, -])*')
"""Stored vetoes and points JSON (`json.dumps` of codes and whole numbers) that becomes compact by
dropping the spaces after its separators."""


class GradeWriter:
    """A row's `GradePublic` or `GradeFull` JSON, as pydantic writes it (tests compare them),
    without a model per row: a year of 100,000 rows in a fraction of a second."""

    def __init__(self, full: bool, risk: RiskModel | None) -> None:
        self.full = full
        self.risk = risk
        self._json: dict[str, str] = {}  # stored vetoes and points JSON, written compact
        self._risks: dict[int, str] = {}

    def _compact(self, stored: str) -> str:
        text = self._json.get(stored)
        if text is None:
            if PLAIN_JSON.fullmatch(stored):  # strings of code characters only, and numbers
                text = stored.replace(", ", ",").replace(": ", ":")
            else:
                text = json.dumps(json.loads(stored), ensure_ascii=False, separators=(",", ":"))
            if len(self._json) < 100_000:
                self._json[stored] = text
        return text

    def _risk(self, score: int) -> str:
        text = self._risks.get(score)
        if text is None:
            found = risks(self.risk, [{"score": score}])[0]
            values = (None, None, None) if found is None else (found.risk, found.lower, found.upper)
            j = [pydantic_core.to_json(v).decode() for v in values]
            text = self._risks[score] = f',"risk":{j[0]},"risk_lower":{j[1]},"risk_upper":{j[2]}'
        return text

    def row(self, r: Mapping[str, Any]) -> str:
        public = (
            f'{{"uscc":{quoted(r["uscc"])},"name":{quoted(r["name"])},'
            f'"status":{quoted(r.get("status") or "operating")},"score":{int(r["score"])},'
            f'"grade":{quoted(r["grade"])},"vetoed":{"true" if r["vetoed"] else "false"}'
        )
        if not self.full:
            return public + "}"
        return (
            f'{public},"licence_no":{quoted(r["licence_no"])},'
            f'"vetoes":{self._compact(r["vetoes"])},"points":{self._compact(r["points"])}'
            f"{self._risk(int(r['score']))}}}"
        )


@dataclass(frozen=True)
class Page:
    """Where a page of a year starts and how many rows it holds (None: to the end)."""

    after: tuple[int, str] | None  # the (score, uscc) of the last row before it
    limit: int | None


def read_cursor(cursor: str, snap: snapshots.Snapshot) -> tuple[int, str]:
    """The (score, uscc) a cursor continues after; InvalidInput for a cursor this service did
    not write, Conflict for one of another revision (the year was corrected since)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        year, revision, score, uscc = data["y"], data["r"], data["s"], data["u"]
        valid = (
            all(type(v) is int for v in (year, revision, score))
            and isinstance(uscc, str)
            and len(uscc) <= 18
        )
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        valid = False
    if not valid or not CURSOR.fullmatch(cursor):
        raise InvalidInput("cursor: not a cursor of this list (use next_cursor as given)")
    if year != snap.year or revision != snap.revision:
        raise Conflict(
            f"cursor: it continues revision {revision} of {year}, but this is revision "
            f"{snap.revision} of {snap.year} (a correction was published): start again"
        )
    return score, uscc


CURSOR = re.compile(r"[A-Za-z0-9_-]{1,200}")


def write_cursor(snap: snapshots.Snapshot, row: Mapping[str, Any]) -> str:
    """A cursor after `row` of `snap`: base64url (unpadded) of
    `{"y": year, "r": revision, "s": score, "u": uscc}`."""
    data = {"y": snap.year, "r": snap.revision, "s": int(row["score"]), "u": row["uscc"]}
    text = json.dumps(data, separators=(",", ":")).encode("ascii")
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def page_of(rows: list[dict[str, Any]], page: Page) -> tuple[list[dict[str, Any]], bool]:
    """The rows of `page` (of `rows`, best score first then by uscc) and whether more follow."""
    start = 0
    if page.after is not None:
        score, uscc = page.after
        low, high = 0, len(rows)  # the first row after (score, uscc) in the year's order
        while low < high:
            middle = (low + high) // 2
            r = rows[middle]
            if (-r["score"], r["uscc"]) <= (-score, uscc):
                low = middle + 1
            else:
                high = middle
        start = low
    end = len(rows) if page.limit is None else min(len(rows), start + page.limit)
    return rows[start:end], end < len(rows)


def year_json(
    meta: SnapshotPublic,
    rows: list[dict[str, Any]],
    writer: GradeWriter,
    next_cursor: str | bool | None = False,
) -> Iterator[bytes]:
    """`RatingPublic`/`RatingFull`'s JSON, in pieces of `CHUNK_ROWS` rows; with a page
    (`next_cursor` not False), a `next_cursor` member after the rows (null on the last page)."""
    yield b'{"snapshot":' + meta.model_dump_json().encode("utf-8") + b',"institutions":['
    for start in range(0, len(rows), CHUNK_ROWS):
        text = ",".join(writer.row(r) for r in rows[start : start + CHUNK_ROWS])
        yield (text if start == 0 else "," + text).encode("utf-8")
    if next_cursor is False:
        yield b"]}"
    else:
        yield b'],"next_cursor":' + json.dumps(next_cursor).encode("ascii") + b"}"


# The fast path of a lookup -----------------------------------------------------------------

LOOKUP_PATH = "/v1/ratings/{year}/{uscc}"
LOOKUP = re.compile(r"/v1/ratings/(0|[1-9][0-9]{0,3})/([^/]{18})")
API_KEY = b"x-api-key"


class FastLookups:
    """Answers `GET /v1/ratings/{year}/{uscc}` for a year kept in memory (module docstring)."""

    def __init__(self, app: ASGIApp, cache: ReadCache, years: PublishedYears, route: Any) -> None:
        self.app = app
        self.cache = cache
        self.years = years
        self.route = route  # the lookup's APIRoute: what routing would have set in the scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self._answer(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(answer)).encode("latin-1")),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _explained(self, entry: PublishedYear, row: dict[str, Any]) -> bytes:
        """The explanation and lift members of the answer, and its closing brace: written from
        the parts kept in memory, or read whole from the database (then in a thread)."""
        explained: Explained
        parts = entry.snapshot.explanation_parts
        if entry.owns is not None and parts is not None:
            explainer = snapshots.explainer(parts)
            own = json.loads(entry.owns[row["uscc"]])
            explained = explainer.figures(row, own)
            written = explainer.json(row, own).encode("utf-8")
        else:
            stored = self.years.explanation(entry, row["uscc"])
            model = snapshots.explained(entry.snapshot, {**row, "explanation": stored})
            explained, written = model, model.__pydantic_serializer__.to_json(model)
        force = entry.force
        same = force is not None and force.content_hash == entry.snapshot.rules_hash
        lifted = lift(explained, force.bands) if force is not None and same else None
        return b"".join(
            [
                b',"explanation":',
                written,
                b',"lift":',
                b"null" if lifted is None else lifted.__pydantic_serializer__.to_json(lifted),
                b"}",
            ]
        )

    async def _answer(self, scope: Scope) -> bytes | None:
        """The route's answer, from memory; None: let the route answer."""
        if scope["method"] != "GET" or scope["query_string"] or self.years.budget <= 0:
            return None
        matched = LOOKUP.fullmatch(scope["path"])
        if matched is None:
            return None
        year, uscc = int(matched[1]), matched[2]
        if not MIN_YEAR <= year <= MAX_YEAR or uscc_check.problem(uscc):
            return None
        key: str | None = None
        seen_key = False
        for name, value in scope["headers"]:
            if name == API_KEY and not seen_key:  # the first, as the route reads it
                seen_key = True
                key = value.decode("latin-1") or None
            elif (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
                return None  # a body: the route's business
        if GENERATION in scope:  # read by the response cache for this very request
            generation = scope[GENERATION]
        else:
            generation = await self.cache.generation()
        entry = await self.years.get(year, generation)
        if entry is None:
            return None
        row = entry.by_uscc.get(uscc)
        if row is None:
            return None
        who: Principal | None = None
        if key is not None:
            known: tuple[str, Principal | None] | None = scope.get(LOOKED_UP)
            if known is not None and known[0] == key:
                who = known[1]
            else:
                who = await find_principal(self.cache, self.years.engine, key, generation)
            if who is None:
                return None  # refused by the route (401), and counted by the guard
        state = scope["app"].state
        settings: Settings = state.settings
        snap = entry.snapshot
        if entry.meta is None:
            meta = SnapshotPublic.of(snap, publicity(snap, settings))
            entry.meta = meta.__pydantic_serializer__.to_json(meta)
        full = who is not None and who.role in FULL_VIEW
        writer = entry.writers.get(full)
        if writer is None:
            writer = entry.writers[full] = GradeWriter(full, state.risk)
        # InstitutionRating's JSON, member by member (tests compare it with the route's): the
        # snapshot's part, the same for every row, written once; the rating as the whole
        # year's rows are written.
        parts = [b'{"snapshot":', entry.meta, b',"rating":', writer.row(row).encode("utf-8")]
        if who is not None and who.role in EXPLAINERS:
            if entry.force is None:
                entry.force = in_force(state.rules, snap)
            # From memory at once; an explanation stored whole is read in a thread, so the
            # event loop keeps answering the others meanwhile.
            if entry.owns is not None:
                parts.append(self._explained(entry, row))
            else:
                parts.append(await run_in_threadpool(self._explained, entry, row))
        else:
            parts.append(b',"explanation":null,"lift":null}')
        answer = b"".join(parts)
        route = self.route
        scope["route"], scope["endpoint"] = route, route.endpoint  # as routing would set them
        scope["path_params"] = {"year": matched[1], "uscc": uscc}
        return answer
