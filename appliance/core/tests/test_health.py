from __future__ import annotations

import pytest
from django.test import Client, override_settings


def test_healthz() -> None:
    assert Client().get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ready() -> None:
    resp = Client().get("/readyz")
    assert resp.status_code == 200 and resp.json()["status"] == "ready"


@pytest.mark.django_db
def test_readyz_names_redis_when_down() -> None:
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        resp = Client().get("/readyz")
    assert resp.status_code == 503
    assert [d.split(":")[0] for d in resp.json()["down"]] == ["redis"]


def test_request_id_generated_and_invalid_one_replaced() -> None:
    resp = Client().get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert len(resp["X-Request-ID"]) == 32 and "\n" not in resp["X-Request-ID"]


@pytest.mark.django_db
def test_openapi_schema_and_docs() -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    assert '"/api/v1/audit-log/export/"' in out.getvalue() and "bearerAuth" in out.getvalue()
    assert Client().get("/api/docs/").status_code == 302  # behind the login: test_exposure.py
