"""The import form in a real browser: the upload goes to the API with the session's CSRF token, the new
import appears and its progress bar follows the row (the node's worker is played by the test)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from appliance.deployments.tests.factories import simulated_node
from appliance.images import tasks as image_tasks
from appliance.images.choices import ImportState
from appliance.images.models import ImageImport
from appliance.images.tests.test_images_api import make_tar
from conftest import PASSWORD
from tests.browser import conftest as browser_fixtures

# The browser fixtures live in tests/browser/conftest.py, which only covers tests/browser/.
browser, page = browser_fixtures.browser, browser_fixtures.page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
BROKER_URL = "redis://127.0.0.1:6379/13"
NODE = f"img-browser-{os.getpid()}"
QUEUE = f"node.{NODE}"


@pytest.fixture
def console_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Imports under the test's directory; the task the upload queues lands in a broker database of its own."""
    redis.Redis.from_url(BROKER_URL).delete(QUEUE)
    yield {"APPLIANCE_IMAGE_IMPORT_DIR": str(tmp_path / "images"), "CELERY_BROKER_URL": BROKER_URL}
    redis.Redis.from_url(BROKER_URL).delete(QUEUE)


def _queued_tasks() -> list[str]:
    return [json.loads(m)["headers"]["task"] for m in redis.Redis.from_url(BROKER_URL).lrange(QUEUE, 0, -1)]


def test_upload_from_the_page_and_watch_progress(console_url: str, page: Any, personas: dict, tmp_path: Path) -> None:
    simulated_node(NODE)
    tarball = make_tar(tmp_path / "engine.tar")
    base = console_url
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")

    page.goto(f"{base}/images/")
    page.set_input_files("#import-form input[name=file]", str(tarball))
    page.click("#import-form button[type=submit]")
    row = page.locator("#import-rows tr[data-import-id]").first
    row.locator("[data-field=state]").filter(has_text="等待中").wait_for()
    imp = ImageImport.objects.get()
    assert imp.node.name == NODE and Path(imp.path).read_bytes() == tarball.read_bytes()
    assert _queued_tasks() == [image_tasks.import_image.name]  # on the node's own queue

    ImageImport.objects.filter(pk=imp.pk).update(state=ImportState.RUNNING, progress=40)
    page.wait_for_function("document.querySelector('#import-rows progress').value == 40")
    ImageImport.objects.filter(pk=imp.pk).update(state=ImportState.DONE, progress=100, loaded_tags=["x/y:1"])
    row.locator("[data-field=tags]").filter(has_text="x/y:1").wait_for()
    assert row.locator("[data-field=state]").inner_text() == "已完成"
    assert page.locator("#import-rows progress").first.evaluate("p => p.value") == 100
