"""`make run` as a new user meets it: the console its script starts, in Chromium, with every asset of every
page loading (style sheets, scripts, the fonts and images they name, the API docs' own files).

The console here is started by deploy/scripts/run-console.sh, the script `make run` ends with (web,
Celery worker and beat), on the test database; the test fails on any request of the page that fails or
answers an error, and on any url() of a style sheet that does not load.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PASSWORD, served_database_url
from tests.served import ROOT, free_port, served_env, stop

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGES = [
    "/", "/chat/", "/departments/", "/users/", "/api-keys/", "/audit-log/", "/nodes/", "/gpus/", "/gpu-quotas/",
    "/profiles/", "/catalog/", "/capacity/", "/usage/", "/deployments/", "/deployments/new/", "/images/",
    "/api/docs/", "/api/redoc/",
]  # fmt: skip
# Every url() of the page's own style sheets (fonts, images), fetched: a font is only requested once used.
CSS_URLS = """async () => {
    const urls = new Set();
    for (const sheet of document.styleSheets) {
        if (!sheet.href || new URL(sheet.href).origin !== location.origin) continue;
        for (const rule of sheet.cssRules) {
            for (const m of rule.cssText.matchAll(/url\\("?([^")]+)"?\\)/g)) {
                if (!m[1].startsWith("data:")) urls.add(new URL(m[1], sheet.href).href);
            }
        }
    }
    const failed = [];
    for (const url of urls) {
        const response = await fetch(url);
        if (!response.ok) failed.push(`${response.status} ${url}`);
    }
    return {count: urls.size, failed};
}"""


# Redoc's bundle always tries its vendor's logo and hides it when it does not load; nothing of the docs
# depends on it. Every other request must stay on the console.
OPTIONAL_ELSEWHERE = {"https://cdn.redoc.ly/redoc/logo-mini.svg"}
# The appliance is offline: every script, style sheet, icon or frame comes from the console itself.
FOREIGN = """() => [...document.querySelectorAll("script[src], link[href], img[src], iframe[src]")]
    .map((e) => e.src || e.href)
    .filter((url) => !url.startsWith("data:") && new URL(url, location.href).origin !== location.origin)"""


@pytest.fixture
def made_run(transactional_db: Any, tmp_path: Path) -> Iterator[str]:
    """deploy/scripts/run-console.sh on a free port; yields the URL it printed."""
    tag = f"assets{os.getpid()}"
    port = free_port()
    env = served_env(
        DATABASE_URL=served_database_url(),
        CONSOLE_ENV="test",
        CONSOLE_PORT=str(port),
        CELERY_BROKER_URL="redis://127.0.0.1:6379/13",
        APPLIANCE_DEFAULT_QUEUE=f"default-{tag}",
        APPLIANCE_NODE_NAME=tag,
        CONSOLE_ID=tag,
    )
    env.pop("CONSOLE_HOST", None)  # the script's own default: loopback
    log = tmp_path / "run-console.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["deploy/scripts/run-console.sh"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = _printed_url(proc, log)
        assert url == f"http://127.0.0.1:{port}/"
        yield url.rstrip("/")
    finally:
        stop(proc)


def _printed_url(proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = re.search(r"Console: (http://\S+)", log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError(f"run-console.sh printed no URL: {log.read_text(errors='replace')[-3000:]}")


def _log_in(page: Any, base: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_every_asset_of_every_page_loads(made_run: str, page: Any, personas: dict) -> None:
    base = made_run
    problems: list[str] = []
    # A request cut short by leaving the page (the API docs' schema) is not a missing asset.
    page.on(
        "requestfailed",
        lambda r: (
            None
            if r.failure == "net::ERR_ABORTED" or r.url in OPTIONAL_ELSEWHERE
            else problems.append(f"failed {r.url}: {r.failure}")
        ),
    )
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    _log_in(page, base)
    checked = 0
    for path in PAGES:
        page.goto(f"{base}{path}", wait_until="networkidle")
        foreign = set(page.evaluate(FOREIGN)) - OPTIONAL_ELSEWHERE
        problems += [f"{path} loads from another site: {url}" for url in sorted(foreign)]
        result = page.evaluate(CSS_URLS)
        problems += [f"{path}: {failed}" for failed in result["failed"]]
        checked += result["count"]
    page.wait_for_selector(".redoc-wrap >> text=Appliance console API")  # the last page: Redoc drew the schema
    page.goto(f"{base}/api/docs/", wait_until="networkidle")
    page.wait_for_selector(".swagger-ui >> text=Appliance console API")
    assert problems == []
    assert checked >= 20  # KaTeX's fonts at least: the check saw the style sheets' files
    page.goto(f"{base}/chat/")
    page.wait_for_selector("[data-testid=connection] >> text=已连接")  # the chat's socket, through the same server
    assert problems == []


def test_static_files_are_hashed_compressed_and_cached_for_long(made_run: str) -> None:
    html = httpx.get(f"{made_run}/login/").text
    css = re.search(r'href="(/static/vendor/pico\.min\.[0-9a-f]{12}\.css)"', html)
    assert css, "the page names the hashed file"
    response = httpx.get(f"{made_run}{css.group(1)}", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "immutable" in response.headers["cache-control"]
    assert httpx.get(f"{made_run}/static/no-such-file.css").status_code == 404
    debug_probe = httpx.get(f"{made_run}/no-such-page/")
    # DEBUG is off: no technical 404 page listing the URL patterns.
    assert debug_probe.status_code == 404 and "URLconf" not in debug_probe.text
