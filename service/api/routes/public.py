"""The public page (公示) and its downloads: anyone, no key, only published results.

Thin: the page's query string is read as plain text and checked by `service.api.public.view`,
so that a bad value gets a Chinese page (400), and an unknown year, revision or file a Chinese
404 page, instead of the API's JSON problems. None of it is part of the API's schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, Response

from service.api.deps import Anyone, EngineDep, RulesDep, SettingsDep
from service.api.public import downloads, render
from service.api.public.view import BadQuery, Query, View, build, latest_year, parse_year
from service.core.database import reading
from service.core.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC = {"public.css": "text/css; charset=utf-8"}
"""The files under /public/static/: named here, so no path from a request reaches the disk."""


def not_found(detail: str) -> HTMLResponse:
    return HTMLResponse(render.error(404, "未找到", detail), status_code=404)


def _answer(respond: Callable[[], Response]) -> Response:
    """`respond()`, or the Chinese page of why not (404 not found, 400 a bad query)."""
    try:
        return respond()
    except NotFound as exc:
        return not_found(str(exc))
    except BadQuery as exc:
        return HTMLResponse(render.error(400, "查询条件有误", str(exc)), status_code=400)


class Page:
    """The parts every public URL takes: the app's state and the raw query string."""

    def __init__(
        self,
        engine: EngineDep,
        rules: RulesDep,
        settings: SettingsDep,
        q: str | None = None,
        sort: str | None = None,
        order: str | None = None,
        revision: str | None = None,
    ) -> None:
        self.engine, self.rules, self.settings = engine, rules, settings
        self.raw = (q, sort, order, revision)

    def view(self, year: str | None) -> View:
        query = Query.parse(*self.raw)
        with reading(self.engine) as conn:
            number = latest_year(conn) if year is None else parse_year(year)
            return build(conn, rules=self.rules, settings=self.settings, year=number, query=query)

    def html(self, year: str | None) -> Response:
        return _answer(lambda: HTMLResponse(render.page(self.view(year))))

    def file(self, year: str, kind: str) -> Response:
        def respond() -> Response:
            view = self.view(year)
            return Response(
                downloads.content(view, kind),
                media_type=downloads.TYPES[kind],
                headers={"Content-Disposition": downloads.disposition(view, kind)},
            )

        return _answer(respond)


@router.get("/public/static/{name}")
def static(name: str, who: Anyone) -> Response:
    if name not in STATIC:
        return not_found("没有这个文件")
    headers = {"Cache-Control": "public, max-age=3600"}
    return FileResponse(render.STATIC / name, media_type=STATIC[name], headers=headers)


@router.get("/public")
def latest(who: Anyone, page: Annotated[Page, Depends()]) -> Response:
    """The newest published year."""
    return page.html(None)


@router.get("/public/{year}.csv")
def csv_file(year: str, who: Anyone, page: Annotated[Page, Depends()]) -> Response:
    return page.file(year, "csv")


@router.get("/public/{year}.xlsx")
def xlsx_file(year: str, who: Anyone, page: Annotated[Page, Depends()]) -> Response:
    return page.file(year, "xlsx")


@router.get("/public/{year}")
def year_page(year: str, who: Anyone, page: Annotated[Page, Depends()]) -> Response:
    return page.html(year)
