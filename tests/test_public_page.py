"""The public page (公示) over plain HTTP, against a real service on both databases: only
published rows, search and sort by the query string, the revisions with their reasons, the
CSV and XLSX of exactly the rows shown (formulas neutralised), Chinese 404 and 400 pages, the
print stylesheet, and the API docs with no CDN. The browser's view is tests/test_browser.py."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from html import escape as html_escape
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from service.core.database import make_engine
from service.core.migrate import upgrade
from tests.conftest import Live
from tests.servers import running_service
from tests.strategies import make_uscc

FORMULA = make_uscc("MJ0700001")  # an institution whose name a spreadsheet would run
DRAFT_ONLY = make_uscc("MJ0700002")  # recorded after the correction: only in a draft
FORMULA_NAME = '=HYPERLINK("http://evil.example","点击")培训学校'
REASON = "补录2023年检查结论，更正评价结果"
BOM = b"\xef\xbb\xbf"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class Rows(HTMLParser):
    """The cells of each institution's row (`<tr data-uscc>`) of a public page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.in_row = False
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.in_row = "data-uscc" in dict(attrs)
            if self.in_row:
                self.rows.append([])
        elif tag == "td" and self.in_row:
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr":
            self.in_row = False

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def rows_of(html: str) -> list[tuple[str, str, str, str]]:
    """The page's rows: name, credit code, grade letter and label (the index cell dropped)."""
    parser = Rows()
    parser.feed(html)
    shown = []
    assert all(len(row) == 4 for row in parser.rows), parser.rows
    for _, name, code, grade_cell in parser.rows:
        grade, _, label = grade_cell.partition(" ")
        shown.append((name, code, grade, label.strip()))
    return shown


def page(http: httpx.Client, path: str, status: int = 200, **params: str) -> str:
    response = http.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<html lang="zh-CN">' in response.text
    return response.text


@pytest.fixture(scope="module")
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def published(live: Live, http: httpx.Client) -> dict[str, Any]:
    """2023 published, then corrected (revision 2, with a reason), then a draft (revision 3)
    holding an institution recorded after; 2024 computed but never published. Returns what
    the API shows anyone of 2023, and of its first revision."""
    supervisor = live.as_("supervisor")

    def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = http.post(path, headers=supervisor, json=body)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    def institution(uscc: str, name: str) -> dict[str, str]:
        return {"uscc": uscc, "name": name, "district_code": "120111", "licence_no": "教民X号"}

    post("/v1/institutions", institution(FORMULA, FORMULA_NAME))
    post("/v1/ratings/2023")
    post("/v1/ratings/2023/publish")
    finding = {"uscc": FORMULA, "indicator": "licence_not_lent", "occurred_on": "2023-05-06"}
    post("/v1/findings", finding)
    post("/v1/ratings/2023")
    assert post("/v1/ratings/2023/publish", {"reason": REASON})["revision"] == 2
    post("/v1/institutions", institution(DRAFT_ONLY, "天津市西青区仅草稿培训学校"))
    assert post("/v1/ratings/2023")["revision"] == 3
    post("/v1/ratings/2024")
    return {
        "current": http.get("/v1/ratings/2023").json(),
        "first": http.get("/v1/ratings/2023", params={"revision": 1}).json(),
    }


def grades(rating: dict[str, Any]) -> dict[str, str]:
    return {i["uscc"]: i["grade"] for i in rating["institutions"]}


def test_the_page_shows_the_published_grades_and_nothing_else(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    html = page(http, "/public")  # the newest published year: 2024 is only a draft
    assert html == page(http, "/public/2023")
    assert "<title>2023年度校外培训机构信用评价结果公示" in html
    assert "天津市学科类校外培训机构信用监管暂行办法" in html  # the measure
    assert "天津市西青区教育局" in html  # the bureau (CREDIT_BUREAU_NAME)
    assert "第2版" in html and REASON in html and "有效期" in html and "公布日期" in html
    shown = rows_of(html)
    assert {code: grade for _, code, grade, _ in shown} == grades(published["current"])
    assert DRAFT_ONLY not in html and "仅草稿" not in html
    labels = {"A": "优秀", "B": "良好", "C": "中等", "D": "较差"}
    assert all(label == labels[grade] for _, _, grade, label in shown)
    assert all(f"grade grade-{grade}" in html for _, _, grade, _ in shown)  # its colour
    # No score, finding, note or explanation: only names, codes and grades.
    table = html[html.index('<table class="grades">') : html.index("</table>")]
    scores = {str(i["score"]) for i in published["current"]["institutions"]}
    assert not any(re.search(rf"\b{score}\b", table) for score in scores)
    assert "分" not in table
    assert "XQ-2023" not in html and "西青教查" not in html and "扣" not in html.split("<footer")[0]
    assert "<script" not in html


def test_earlier_revisions_are_listed_with_their_reasons_and_drafts_never(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    html = page(http, "/public/2023")
    assert 'href="/public/2023?revision=1"' in html and "首次公布" in html
    assert f"更正：{REASON}" in html
    assert "?revision=3" not in html and "第3版" not in html  # the draft
    assert re.findall(r'data-changed="([^"]+)"', html) == [FORMULA]  # A → B, the one change
    changed = html[html.index('data-changed="') : html.index("</tr>", html.index("data-changed"))]
    assert changed.index("grade-A") < changed.index("grade-B")
    publicity = re.search(r"<dt>公示期</dt><dd>(.*?)</dd>", html)
    assert publicity and "（7日）" in publicity[1] and "天津市西青区教育局提出" in publicity[1]
    first = page(http, "/public/2023", revision="1")
    assert "data-changed" not in first  # the first publication corrects nothing
    assert "您正在查看已被更正的第1版" in first and 'href="/public/2023"' in first
    shown = {code: grade for _, code, grade, _ in rows_of(first)}
    assert shown == grades(published["first"])
    assert (shown[FORMULA], grades(published["current"])[FORMULA]) == ("A", "B")
    for revision in ("3", "4", "999999"):  # a draft is as unknown as a revision never made
        assert "没有已公布的第" in page(http, "/public/2023", 404, revision=revision)


def test_search_narrows_the_rows_and_sorting_orders_them(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    everything = rows_of(page(http, "/public/2023"))
    assert len(everything) == len(published["current"]["institutions"]) == 17
    found = rows_of(page(http, "/public/2023", q="博文"))
    assert [name for name, *_ in found] == ["天津市西青区博文培训学校"]
    assert "其中名称或信用代码含“博文”的1家" in page(http, "/public/2023", q="博文")
    by_code = rows_of(page(http, "/public/2023", q=" ５２１２０１１１ｍｊ06185738 "))  # full width
    assert [code for _, code, *_ in by_code] == ["52120111MJ06185738"]
    assert "没有符合条件的机构" in page(http, "/public/2023", q="不存在的机构")
    rank = {"A": 0, "B": 1, "C": 2, "D": 3}
    assert [(rank[g], c) for _, c, g, _ in everything] == sorted(
        (rank[g], c) for _, c, g, _ in everything
    )
    names = [n for n, *_ in rows_of(page(http, "/public/2023", sort="name", order="desc"))]
    assert names == sorted(names, reverse=True)
    codes = [c for _, c, *_ in rows_of(page(http, "/public/2023", sort="uscc"))]
    assert codes == sorted(codes)
    worst_first = rows_of(page(http, "/public/2023", sort="grade", order="desc"))
    assert [rank[g] for _, _, g, _ in worst_first] == sorted(
        (rank[g] for _, _, g, _ in everything), reverse=True
    )


def test_the_csv_has_a_bom_and_exactly_the_rows_shown(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    params = {"q": "培训学校", "sort": "name", "order": "desc"}
    shown = rows_of(page(http, "/public/2023", **params))
    response = http.get("/public/2023.csv", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    assert "filename*=UTF-8''2023" in response.headers["content-disposition"]
    assert response.content.startswith(BOM)
    lines = response.content[len(BOM) :].decode("utf-8").split("\r\n")
    assert lines[0] == "机构名称,统一社会信用代码,信用等级,等级说明"
    assert lines[-1] == ""
    written = [tuple(r) for r in csv.reader(lines[1:-1])]
    expected = [(("'" + n) if n.startswith("=") else n, c, g, lb) for n, c, g, lb in shown]
    assert written == expected
    assert any(name.startswith("'=HYPERLINK") for name, *_ in written)  # neutralised
    narrowed = http.get("/public/2023.csv", params={"q": "博文"}).content.decode("utf-8-sig")
    assert narrowed.count("\r\n") == 2 and "天津市西青区博文培训学校" in narrowed


def test_the_xlsx_reads_back_as_the_rows_shown(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    params = {"sort": "uscc", "revision": "1"}
    shown = rows_of(page(http, "/public/2023", **params))
    response = http.get("/public/2023.xlsx", params=params)
    assert response.status_code == 200 and response.headers["content-type"] == XLSX
    assert "r1.xlsx" in response.headers["content-disposition"]
    book = load_workbook(io.BytesIO(response.content))
    [sheet] = book.worksheets
    values = [tuple(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0] == ("机构名称", "统一社会信用代码", "信用等级", "等级说明")
    expected = [(("'" + n) if n.startswith("=") else n, c, g, lb) for n, c, g, lb in shown]
    assert values[1:] == expected
    assert all(cell.data_type == "s" for row in sheet.iter_rows() for cell in row)  # no formula


def test_unknown_years_and_files_get_a_chinese_404_page(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    for path in ("/public/2099", "/public/2024", "/public/1999", "/public/abc", "/public/20231"):
        html = page(http, path, 404)
        assert "<h1>未找到</h1>" in html
    assert "2024年度的信用评价结果尚未公布" in page(http, "/public/2024", 404)  # a draft only
    assert "echoed-back" not in page(http, "/public/echoed-back", 404)  # the path is not shown
    for path in ("/public/2099.csv", "/public/2024.xlsx", "/public/static/../app.py"):
        assert http.get(path).status_code == 404
    assert page(http, "/public/static/nothing.css", 404)


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "score"},
        {"sort": "grade; DROP TABLE snapshots"},
        {"order": "up"},
        {"revision": "abc"},
        {"revision": "0"},
        {"revision": "-1"},
        {"revision": "1" * 40},
        {"q": "x" * 101},
        {"q": "机构\x00"},
        {"q": "\x1b[31m"},
    ],
)
def test_bad_query_values_get_a_400_page_never_a_5xx(
    http: httpx.Client, published: dict[str, Any], params: dict[str, str]
) -> None:
    for path in ("/public", "/public/2023", "/public/2023.csv", "/public/2023.xlsx"):
        response = http.get(path, params=params)
        assert response.status_code == 400, (path, params, response.text)
        assert "查询条件有误" in response.text


def test_odd_but_harmless_queries_are_answered(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    for params in ({"q": "<script>alert(1)</script>"}, {"q": "%"}, {"unknown": "1"}, {"q": ""}):
        html = page(http, "/public/2023", **params)
        assert "<script>" not in html  # escaped, never markup
    assert "&lt;script&gt;" in page(http, "/public/2023", q="<script>")


def test_the_page_has_its_own_stylesheet_with_a_print_layout(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    response = http.get("/public/2023")
    policy = response.headers["content-security-policy"]
    assert "style-src 'self'" in policy and "script-src" not in policy  # no script at all
    assert '<link rel="stylesheet" href="/public/static/public.css">' in response.text
    css = http.get("/public/static/public.css")
    assert css.status_code == 200 and css.headers["content-type"] == "text/css; charset=utf-8"
    assert "@media print" in css.text and "size: A4" in css.text
    assert ".grade-A" in css.text and ".grade-D" in css.text


def test_the_api_docs_load_nothing_from_outside(
    http: httpx.Client, published: dict[str, Any]
) -> None:
    for path, assets in (
        ("/docs", ["swagger-ui-bundle.js", "swagger-ui.css"]),
        ("/redoc", ["redoc.standalone.js"]),
    ):
        html = http.get(path).text
        assert not re.search(r"https?:|//", html)  # no other host, not even scheme-relative
        linked = re.findall(r'(?:src|href)="([^"]*)"', html)
        assert linked and all(link.startswith("/docs/assets/") for link in linked), linked
        for asset in assets:
            assert f"/docs/assets/{asset}" in html
            response = http.get(f"/docs/assets/{asset}")
            assert response.status_code == 200 and len(response.content) > 10_000
    assert b"cdn.redoc.ly" not in http.get("/docs/assets/redoc.standalone.js").content
    assert http.get("/docs/assets/core.py").status_code == 404
    assert "'self'" in http.get("/docs").headers["content-security-policy"]


def test_with_nothing_published_the_latest_page_says_so(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    with running_service(url) as base:
        response = httpx.get(f"{base}/public")
    assert response.status_code == 404
    assert "尚未公布任何年度的信用评价结果" in response.text


def test_a_draw_from_the_year_is_published_on_its_page(
    live: Live, http: httpx.Client, published: dict[str, Any]
) -> None:
    """一公开: the draw's seed, quotas and list, and a link to its whole record."""
    response = http.post(
        "/v1/draws", headers=live.as_("supervisor"), json={"year": 2023, "count": 4, "seed": "p1"}
    )
    assert response.status_code in (200, 201), response.text
    draw = response.json()
    html = page(http, "/public/2023")
    section = html[html.index("“双随机”抽查名单") :]
    assert f'<a href="/v1/draws/{draw["id"]}">' in section and "<code>p1</code>" in section
    names = {row["uscc"]: row["name"] for row in published["current"]["institutions"]}
    for drawn in draw["drawn"]:
        assert drawn["uscc"] in section and html_escape(names[drawn["uscc"]]) in section
    record = http.get(f"/v1/draws/{draw['id']}")  # anyone may read it to rerun the draw
    assert record.status_code == 200 and record.json()["seed"] == "p1"
    assert "“双随机”抽查名单" not in page(http, "/public/2024", status=404)
