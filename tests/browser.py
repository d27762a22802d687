"""Headless Chromium for the browser tests: Debian's `chromium`, driven by Playwright for Python.

Playwright's own browser download does not work on these machines (no internet), so the
system's Chromium is launched by path (`executable_path`), installed by `.ci/run` with
`apt-get install chromium fonts-noto-cjk`. `CREDIT_TEST_CHROMIUM` names another executable.
The flags keep it from reaching for the network on its own (updates, sync, QUIC probes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, Route, sync_playwright

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def chromium_path() -> str | None:
    """The Chromium executable to drive, or None when this machine has none."""
    named = os.environ.get("CREDIT_TEST_CHROMIUM")
    if named:
        return named if os.path.isfile(named) and os.access(named, os.X_OK) else None
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def launched(executable: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def block_outside(page: Page) -> list[str]:
    """Abort every request of `page` to a host other than loopback; the list fills with the
    URLs that were refused (a page that works offline leaves it empty)."""
    refused: list[str] = []

    def handle(route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            refused.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", handle)
    return refused


def platform_fonts(page: Page, selector: str) -> dict[str, int]:
    """The fonts Chromium drew the text directly inside the first `selector` element with
    (family: glyph count), from the DevTools protocol: a character no font of the page has
    is drawn with some other system font, which shows up here."""
    session = page.context.new_cdp_session(page)
    try:
        session.send("DOM.enable")
        session.send("CSS.enable")
        root: dict[str, Any] = session.send("DOM.getDocument")
        found = session.send(
            "DOM.querySelector", {"nodeId": root["root"]["nodeId"], "selector": selector}
        )
        fonts = session.send("CSS.getPlatformFontsForNode", {"nodeId": found["nodeId"]})
        return {f["familyName"]: int(f["glyphCount"]) for f in fonts["fonts"]}
    finally:
        session.detach()
