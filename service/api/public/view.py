"""What one public page shows: its query string checked, the published snapshot read, and its
rows searched and sorted, before any HTML is written.

Kept apart from the HTML so that the CSV and XLSX downloads list exactly the rows the page
shows, from the same query string. Nothing but published revisions is ever read here, and of
each institution only its name, credit code and grade (selected alone: a score, points or an
explanation are not even fetched), so the public sees no draft, no score, no finding and no
explanation. A correction lists the grades it changed, from the published revision before it.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from sqlalchemy import Connection, select

from scoring.errors import RulesError
from scoring.rules import MAX_YEAR, MIN_YEAR, Band, RuleSet
from service.core.errors import NotFound
from service.core.settings import Settings
from service.core.tables import snapshot_rows
from service.ratings import draws, snapshots
from service.ratings.exports import SUSPENDED_MARK
from service.ratings.publicity import Publicity, publicity

"""Dates on the page are China Standard Time (no daylight saving); stored moments are UTC."""

SORTS = {"grade": "信用等级", "name": "机构名称", "uscc": "统一社会信用代码"}
ORDERS = {"asc": "升序", "desc": "降序"}
MAX_QUERY = 100
"""Characters of a search: more is refused (400), a name is at most 200 and none is searched
by more than a few words."""


class BadQuery(ValueError):
    """A query-string value the page does not accept: answered 400 with a Chinese page."""


def _clean(text: str) -> str:
    """Full-width letters and digits as ASCII, case folded: `５２１２ｍｊ` finds `5212MJ`."""
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True)
class Query:
    """The page's query string: a search, a sort key and direction, and a revision."""

    q: str = ""
    sort: str = "grade"
    order: str = "asc"
    revision: int | None = None

    @classmethod
    def parse(
        cls,
        q: str | None = None,
        sort: str | None = None,
        order: str | None = None,
        revision: str | None = None,
    ) -> Query:
        text = (q or "").strip()
        if len(text) > MAX_QUERY:
            raise BadQuery(f"搜索内容不能超过{MAX_QUERY}个字符")
        if any(unicodedata.category(c) == "Cc" for c in text):
            raise BadQuery("搜索内容含有控制字符")
        if sort not in (None, "", *SORTS):
            raise BadQuery("排序方式只能是 grade（信用等级）、name（机构名称）或 uscc（信用代码）")
        if order not in (None, "", *ORDERS):
            raise BadQuery("排列顺序只能是 asc（升序）或 desc（降序）")
        number = None
        if revision not in (None, ""):
            assert revision is not None
            if not (revision.isascii() and revision.isdigit() and 0 < len(revision) <= 7):
                raise BadQuery("版本号应为正整数")
            number = int(revision)
            if number < 1:
                raise BadQuery("版本号应为正整数")
        return cls(text, sort or "grade", order or "asc", number)

    def params(self, **changes: str | int | None) -> dict[str, str]:
        """The query string of a link: only what differs from the defaults."""
        values = {"q": self.q, "sort": self.sort, "order": self.order, "revision": self.revision}
        values.update(changes)
        defaults = {"q": "", "sort": "grade", "order": "asc", "revision": None}
        return {k: str(v) for k, v in values.items() if v is not None and v != defaults[k]}

    def link(self, path: str, **changes: str | int | None) -> str:
        params = self.params(**changes)
        return f"{path}?{urlencode(params)}" if params else path


def parse_year(text: str) -> int:
    """A year of the path; anything else is a year with nothing published (404)."""
    if not (text.isascii() and text.isdigit() and len(text) == 4):
        raise NotFound("没有这个年度的公示结果")  # the path is not echoed back
    year = int(text)
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise NotFound(f"没有{year}年度的公示结果")
    return year


@dataclass(frozen=True)
class Entry:
    """One institution as the public sees it."""

    name: str
    uscc: str
    grade: str
    label: str


@dataclass(frozen=True)
class NotRated:
    """A closed institution the result lists as not rated, with the reason."""

    uscc: str
    name: str
    reason: str


@dataclass(frozen=True)
class DrawShown:
    """A random-inspection draw from the year's grades (一公开): enough to rerun it from its
    published record, `/v1/draws/{id}`."""

    id: int
    created_at: datetime
    seed: str
    count: int
    quotas: dict[str, int]
    drawn: list[tuple[str, str, str]]  # (name, credit code, grade)


@dataclass(frozen=True)
class Publication:
    """One published revision of the year, for the list of corrections."""

    revision: int
    published_at: datetime
    reason: str | None


@dataclass(frozen=True)
class Change:
    """An institution whose grade the shown correction changed (None: not in that revision)."""

    name: str
    uscc: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class View:
    year: int
    measure: str
    bureau: str
    revision: int
    published_at: datetime
    reason: str | None
    official: int  # the revision in force: the latest published one
    first_published: datetime  # when the year was first published: its validity starts
    superseded_on: datetime | None  # when a later year was first published, if one was
    later_year: int | None
    publications: list[Publication]
    publicity: Publicity | None  # the shown revision's publicity period (公示期)
    changes: list[Change]  # grades changed from the published revision before the shown one
    bands: list[Band]
    total: int
    rows: list[Entry]
    query: Query
    years: list[int] = field(default_factory=list)
    not_rated: list[NotRated] = field(default_factory=list)
    draws: list[DrawShown] = field(default_factory=list)

    @property
    def is_official(self) -> bool:
        return self.revision == self.official

    @property
    def path(self) -> str:
        return f"/public/{self.year}"


def _utc(moment: datetime | None) -> datetime:
    assert moment is not None  # a published snapshot always has its moment
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def latest_year(conn: Connection) -> int:
    """The newest year with a published result (404 when nothing was ever published)."""
    years = [s.year for s in snapshots.every(conn) if s.status == "published"]
    if not years:
        raise NotFound("尚未公布任何年度的信用评价结果")
    return max(years)


def _bands(rules: RuleSet, year: int, scale: str) -> list[Band]:
    """The grades of the snapshot's scale, highest first (none when the rules lost the scale:
    grades are then shown without their labels)."""
    try:
        return list(rules.in_force(year, scale).bands)
    except RulesError:
        return []


def chosen(entries: list[Entry], query: Query, bands: list[Band]) -> list[Entry]:
    """The entries the query finds, in its order (ties always by credit code)."""
    needle = _clean(query.q)
    found = [e for e in entries if needle in _clean(e.name) or needle in _clean(e.uscc)]
    rank = {band.grade: i for i, band in enumerate(bands)}
    keys = {
        "grade": lambda e: (rank.get(e.grade, len(rank)), e.grade, e.uscc),
        "name": lambda e: (e.name, e.uscc),
        "uscc": lambda e: (e.uscc,),
    }
    return sorted(found, key=keys[query.sort], reverse=query.order == "desc")


def _grades(conn: Connection, snapshot: snapshots.Snapshot) -> dict[str, tuple[str, str]]:
    """Name and grade by credit code: all the public page reads of a snapshot's rows (a score,
    points or an explanation are not even fetched)."""
    columns = (snapshot_rows.c.uscc, snapshot_rows.c.name, snapshot_rows.c.grade)
    rows = conn.execute(select(*columns).where(snapshot_rows.c.snapshot_id == snapshot.id))
    return {uscc: (name, grade) for uscc, name, grade in rows}


def _suspended(conn: Connection, snapshot: snapshots.Snapshot) -> set[str]:
    """Credit codes of the rows marked suspended: rated, and marked on the page."""
    rows = conn.execute(
        select(snapshot_rows.c.uscc).where(
            snapshot_rows.c.snapshot_id == snapshot.id, snapshot_rows.c.status == "suspended"
        )
    )
    return {uscc for (uscc,) in rows}


def _changes(before: dict[str, tuple[str, str]], after: dict[str, tuple[str, str]]) -> list[Change]:
    """Institutions whose grade differs between two revisions, by credit code."""
    changed = [
        Change(
            (after.get(uscc) or before[uscc])[0],
            uscc,
            before[uscc][1] if uscc in before else None,
            after[uscc][1] if uscc in after else None,
        )
        for uscc in sorted(before.keys() | after.keys())
        if before.get(uscc, (None, None))[1] != after.get(uscc, (None, None))[1]
    ]
    return changed


def build(conn: Connection, *, rules: RuleSet, settings: Settings, year: int, query: Query) -> View:
    """The page of `year` (its official revision, or the published one the query names)."""
    every = [s for s in snapshots.every(conn) if s.status == "published"]
    own = sorted((s for s in every if s.year == year), key=lambda s: s.revision)
    if not own:
        raise NotFound(f"{year}年度的信用评价结果尚未公布")
    official = own[-1]
    wanted = official.revision if query.revision is None else query.revision
    position = next((i for i, s in enumerate(own) if s.revision == wanted), None)
    if position is None:  # a draft is answered as a revision that does not exist
        raise NotFound(f"{year}年度没有已公布的第{wanted}版")
    shown = own[position]
    later = [s for s in every if s.year > year]
    next_year = min((s.year for s in later), default=None)
    superseded = min((_utc(s.published_at) for s in later if s.year == next_year), default=None)
    bands = _bands(rules, year, shown.scale)
    labels = {band.grade: band.label for band in bands}
    grades = _grades(conn, shown)
    changes = _changes(_grades(conn, own[position - 1]), grades) if position else []
    suspended = _suspended(conn, shown)
    mark = dict.fromkeys(suspended, SUSPENDED_MARK)
    entries = [
        Entry(name, uscc, grade, labels.get(grade, "") + mark.get(uscc, ""))
        for uscc, (name, grade) in grades.items()
    ]
    return View(
        year=year,
        measure=rules.info.title,
        bureau=settings.bureau_name,
        revision=shown.revision,
        published_at=_utc(shown.published_at),
        reason=shown.reason,
        official=official.revision,
        first_published=_utc(own[0].published_at),
        superseded_on=superseded,
        later_year=next_year,
        publications=[Publication(s.revision, _utc(s.published_at), s.reason) for s in own],
        publicity=publicity(shown, settings),
        changes=changes,
        bands=bands,
        total=len(entries),
        rows=chosen(entries, query, bands),
        not_rated=[NotRated(**entry) for entry in json.loads(shown.not_rated or "[]")],
        draws=[
            DrawShown(
                d["id"],
                _utc(d["created_at"]),
                d["seed"],
                d["count"],
                d["quotas"],
                [(grades.get(x["uscc"], ("", ""))[0], x["uscc"], x["grade"]) for x in d["drawn"]],
            )
            for d in draws.listing(conn, year=year)
        ],
        query=query,
        years=sorted({s.year for s in every}, reverse=True),
    )
