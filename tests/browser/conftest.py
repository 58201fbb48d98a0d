from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# As the machine's probe found: without these, Chromium hangs on connections the closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def goto(page: Any, url: str, attempts: int = 3) -> None:
    """``page.goto``, again when Chromium reports ERR_NETWORK_CHANGED: a container started by the test
    adds a network interface, and Chromium fails the navigation in flight when it sees one appear."""
    from playwright.sync_api import Error

    for attempt in range(attempts):
        try:
            page.goto(url)
            return
        except Error as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == attempts - 1:
                raise


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}; `make test` installs the Debian package 'chromium'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser: Any, *, bypass_csp: bool) -> Iterator[Any]:
    context = browser.new_context(locale="zh-CN", bypass_csp=bypass_csp)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page for UI tests: Playwright's string predicates (wait_for_function) are evaluated with
    `eval`, which the console's Content-Security-Policy refuses, so this context sets the CSP aside."""
    yield from _page(browser, bypass_csp=True)


@pytest.fixture
def strict_page(browser: Any) -> Iterator[Any]:
    """A page that obeys the console's Content-Security-Policy, as a user's browser does."""
    yield from _page(browser, bypass_csp=False)
