"""What the console shows to whom (issue 12, item 7): debug pages, /readyz detail, the API schema, CSV cells."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from conftest import PASSWORD

pytestmark = pytest.mark.django_db

REMOTE = "192.0.2.10"


# --- Django's debug pages -----------------------------------------------------------------------


@pytest.mark.urls("appliance.core.tests.boom_urls")
@override_settings(DEBUG=True)
@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_debug_500_page_is_not_shown_to_other_machines(accept: str) -> None:
    resp = Client(raise_request_exception=False).get("/boom/", REMOTE_ADDR=REMOTE, HTTP_ACCEPT=accept)
    assert resp.status_code == 500
    body = resp.content.decode()
    assert "local-variable-secret-4242" not in body and "Traceback" not in body and "boom with details" not in body
    assert "SECRET_KEY" not in body and "DATABASES" not in body


@pytest.mark.urls("appliance.core.tests.boom_urls")
@override_settings(DEBUG=True)
def test_debug_500_page_is_still_shown_on_loopback() -> None:
    resp = Client(raise_request_exception=False).get("/boom/", REMOTE_ADDR="127.0.0.1", HTTP_ACCEPT="text/html")
    assert resp.status_code == 500 and "boom with details" in resp.content.decode()


@override_settings(DEBUG=True)
def test_debug_404_page_does_not_list_the_urls_to_other_machines() -> None:
    resp = Client().get("/no-such-page/", REMOTE_ADDR=REMOTE)
    assert resp.status_code == 404
    assert "URLconf" not in resp.content.decode() and "api/v1/" not in resp.content.decode()
    local = Client().get("/no-such-page/", REMOTE_ADDR="127.0.0.1")
    assert local.status_code == 404 and "URLconf" in local.content.decode()


# --- /readyz ------------------------------------------------------------------------------------


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_readyz_hides_error_text_from_anonymous_remote_clients() -> None:
    resp = Client().get("/readyz", REMOTE_ADDR=REMOTE)
    assert resp.status_code == 503
    assert resp.json()["down"] == ["redis"]  # the name, not the exception text


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_readyz_detail_for_loopback_and_platform_admins(personas: dict) -> None:
    local = Client().get("/readyz", REMOTE_ADDR="127.0.0.1").json()["down"]
    assert local[0].startswith("redis: ") and len(local[0]) > len("redis: ")
    admin = Client()
    admin.force_login(personas["root"])
    assert admin.get("/readyz", REMOTE_ADDR=REMOTE).json()["down"][0].startswith("redis: ")
    member = Client()
    member.force_login(personas["bob"])
    assert member.get("/readyz", REMOTE_ADDR=REMOTE).json()["down"] == ["redis"]


# --- the API schema and docs --------------------------------------------------------------------


def test_schema_and_docs_need_a_login(personas: dict, api_as: Callable[[str], APIClient]) -> None:
    assert Client().get("/api/schema/").status_code in (401, 403)
    docs = Client().get("/api/docs/")
    assert docs.status_code == 302 and docs["Location"].startswith("/login/")
    assert api_as("bob").get("/api/schema/").status_code == 200
    client = Client()
    assert client.login(username="bob", password=PASSWORD)
    assert client.get("/api/docs/").status_code == 200


@override_settings(API_DOCS_PUBLIC=True)
def test_schema_and_docs_can_be_opened() -> None:
    assert Client().get("/api/schema/").status_code == 200
    assert Client().get("/api/docs/").status_code == 200


# --- audit CSV ----------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ['=HYPERLINK("https://evil.example","open")', "+1+1", "-2+3", "@SUM(1)"])
def test_csv_neutralises_formulas_typed_as_login_names(
    personas: dict, api_as: Callable[[str], APIClient], typed: str
) -> None:
    Client().post("/login/", {"username": typed, "password": "wrong"})
    resp = api_as("eve").get("/api/v1/audit-log/export/?action=login.failure")
    text = b"".join(resp.streaming_content).decode("utf-8-sig")  # type: ignore[attr-defined]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows, text
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert rows[0]["target_label"] == "'" + typed


@pytest.mark.parametrize(("value", "cell"), [("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("a=1", "a=1"), (-3, -3), ("", "")])
def test_csv_cell(value: object, cell: object) -> None:
    from appliance.audit.api.views import csv_cell

    assert csv_cell(value) == cell
