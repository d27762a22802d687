"""The public page and the API docs in a real browser: headless Chromium (tests/browser.py)
against a real service on loopback, with two years of the sample district published and one
corrected.

With JavaScript on and off, the page shows its Chinese title and every row, a search narrows
the list and a column header sorts it, all by plain GET requests; every Chinese character is
drawn with a CJK font (no missing glyph); printed, it is an A4 list without the form. The docs
render their operations with every request to another host refused. Screenshots go to
build/screenshots/ on every run, and to docs/screenshots/ (linked from docs/public.md) with
CREDIT_UPDATE_SCREENSHOTS=1, so a test run leaves the committed ones alone.

Skipped only when this machine has no Chromium, saying so; in CI (CI=true) that fails instead.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page

from scoring.shipped import load_rules
from service.api import keys
from service.api.keys import Role
from service.core.database import make_engine, writing
from service.core.migrate import upgrade
from service.records.importing import import_files
from tests.browser import block_outside, chromium_path, launched, platform_fonts
from tests.conftest import SAMPLE_FILES
from tests.servers import ROOT, running_service

MISSING = "no Chromium executable (apt-get install chromium, or set CREDIT_TEST_CHROMIUM)"
if chromium_path() is None and not os.environ.get("CI"):
    pytest.skip(f"browser tests skipped: {MISSING}", allow_module_level=True)

SHOTS = ROOT / ("docs" if os.environ.get("CREDIT_UPDATE_SCREENSHOTS") else "build") / "screenshots"
REVOKED = "XQ-2024-0003"
REASON_2024 = "异议成立，撤销一项投诉查实结论（12345热线工单202403250046），更正评价结果"
CJK_FONTS = {"Noto Sans CJK SC", "Noto Serif CJK SC", "Source Han Sans SC"}
SAMPLE_SIZE = 16


@dataclass(frozen=True)
class Site:
    base: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The sample district with 2023 published and 2024 published, then corrected."""
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'credit-rating.db'}"
    engine = make_engine(url)
    upgrade(engine)
    import_files(engine, SAMPLE_FILES, rules=load_rules(), by="tests")
    with writing(engine) as conn:
        key = keys.create(conn, role=Role.SUPERVISOR, name="test supervisor")
    engine.dispose()
    with running_service(url) as base, httpx.Client(base_url=base, timeout=30) as http:
        headers = {"X-API-Key": key}

        def post(path: str, body: dict[str, str] | None = None) -> None:
            response = http.post(path, headers=headers, json=body)
            assert response.status_code in (200, 201), response.text

        for year in (2023, 2024):
            post(f"/v1/ratings/{year}")
            post(f"/v1/ratings/{year}/publish")
        post(f"/v1/findings/{REVOKED}/revoke", {"reason": "当事人异议成立，退费已按合同办理"})
        post("/v1/ratings/2024")
        post("/v1/ratings/2024/publish", {"reason": REASON_2024})
        yield Site(base)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:  # only in CI: elsewhere the module is skipped
        pytest.fail(f"the browser tests must run in CI: {MISSING}", pytrace=False)
    with launched(executable) as running:
        yield running


def open_page(browser: Browser, *, javascript: bool = True) -> Page:
    context = browser.new_context(
        java_script_enabled=javascript,
        locale="zh-CN",
        viewport={"width": 1100, "height": 900},
    )
    return context.new_page()


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    """A screenshot for the docs, in 128 colours: a quarter of the bytes, the text as sharp."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(page.screenshot(full_page=full_page)))
    image.convert("RGB").quantize(colors=128).save(SHOTS / name, optimize=True)


def names(page: Page) -> list[str]:
    return page.locator("tr[data-uscc] td.name").all_inner_texts()


@pytest.mark.parametrize("javascript", [True, False], ids=["js-on", "js-off"])
def test_the_public_page_searches_and_sorts_with_javascript_on_and_off(
    browser: Browser, site: Site, javascript: bool
) -> None:
    page = open_page(browser, javascript=javascript)
    refused = block_outside(page)
    try:
        page.goto(f"{site.base}/public")
        assert page.title().startswith("2024年度校外培训机构信用评价结果公示")
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        assert page.locator("h1").inner_text() == "2024年度学科类校外培训机构信用评价结果公示"
        assert REASON_2024 in page.locator(".facts").inner_text()
        assert page.locator("tr[data-uscc]").count() == SAMPLE_SIZE
        grades = page.locator("tr[data-uscc] .grade").all_inner_texts()
        assert grades == sorted(grades)  # best grade first
        if javascript:
            shot(page, "public-2024.png", full_page=True)
            colour = page.locator("tr[data-uscc] .grade-A").first.evaluate(
                "e => getComputedStyle(e).backgroundColor"
            )
            assert colour == "rgb(26, 127, 55)"  # the stylesheet is applied

        page.fill("#q", "文化")
        with page.expect_navigation():
            page.get_by_role("button", name="查询").click()
        assert "q=%E6%96%87%E5%8C%96" in page.url
        narrowed = names(page)
        assert 0 < len(narrowed) < SAMPLE_SIZE and all("文化" in n for n in narrowed)
        assert page.locator("#q").input_value() == "文化"

        with page.expect_navigation():
            page.locator("th.col-name a").click()  # sort by name, the search kept
        assert names(page) == sorted(narrowed)
        with page.expect_navigation():
            page.locator("th.col-name a").click()  # again: the other way round
        assert names(page) == sorted(narrowed, reverse=True)
        assert page.locator("th.col-name").get_attribute("aria-sort") == "descending"

        with page.expect_navigation():
            page.get_by_role("link", name="第1版").click()  # the revision before the correction
        assert "revision=1" in page.url
        assert "已被更正的第1版" in page.locator(".notice").inner_text()
        assert refused == []
    finally:
        page.context.close()


def test_every_chinese_character_is_drawn_with_a_cjk_font(browser: Browser, site: Site) -> None:
    page = open_page(browser, javascript=False)
    try:
        page.goto(f"{site.base}/public/2024")
        for selector in ("h1", ".masthead .bureau", "td.name", "caption", "footer p", "dt"):
            fonts = platform_fonts(page, selector)
            assert fonts and set(fonts) <= CJK_FONTS, (selector, fonts)
    finally:
        page.context.close()


def test_printed_it_is_an_a4_list_without_the_form(browser: Browser, site: Site) -> None:
    page = open_page(browser)
    try:
        page.goto(f"{site.base}/public/2024")
        page.emulate_media(media="print")
        assert page.locator("form.search").is_hidden()
        assert page.locator(".downloads").is_hidden()
        assert page.locator("table.grades").is_visible()
        pdf = page.pdf(prefer_css_page_size=True, print_background=True)
        assert pdf.startswith(b"%PDF")
        boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
        assert boxes and all(
            abs(float(w) - 595.3) < 1 and abs(float(h) - 841.9) < 1 for w, h in boxes
        ), boxes  # A4 portrait, in points
    finally:
        page.context.close()


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_api_docs_render_with_every_outside_request_refused(
    browser: Browser, site: Site, path: str
) -> None:
    page = open_page(browser)
    refused = block_outside(page)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{site.base}{path}")
        if path == "/docs":
            operation = page.locator(".opblock", has_text="/v1/ratings/{year}").first
            operation.wait_for()
            assert page.locator(".opblock").count() >= 15
            shot(page, "api-docs.png")
        else:
            page.get_by_text("/v1/ratings/{year}/publish").first.wait_for(state="attached")
            assert "credit-rating" in page.locator("h1").first.inner_text()
        assert refused == []
        assert errors == []
    finally:
        page.context.close()
