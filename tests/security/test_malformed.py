"""Malformed ids and bodies get 400/404 with the error shape, never a 500 (issue 12, item 7)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

MALFORMED_IDS = ["null%2Cnull", "null,null", "1.5", "-1", "abc", "%20", "1e3", "99999999999999999999999"]


def assert_error_shape(resp: object, status: int) -> None:
    assert resp.status_code == status, (resp.status_code, resp.content)  # type: ignore[attr-defined]
    error = resp.json()["error"]  # type: ignore[attr-defined]
    assert set(error) == {"code", "message", "details"} and error["code"] and error["message"]


@pytest.mark.parametrize("bad_id", MALFORMED_IDS)
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("post", "/api/v1/deployments/{}/start/"),
        ("patch", "/api/v1/users/{}/"),
        ("get", "/api/v1/departments/{}/"),
        ("post", "/api/v1/users/{}/password/"),
        ("post", "/api/v1/api-keys/{}/revoke/"),
        ("delete", "/api/v1/quotas/{}/"),
        ("get", "/api/v1/gpus/{}/metrics/"),
        ("get", "/api/v1/profiles/{}/fit/"),
        ("patch", "/api/v1/conversations/{}/"),
    ],
)
def test_malformed_id_is_404_never_500(
    api_as: Callable[[str], APIClient], method: str, template: str, bad_id: str
) -> None:
    resp = getattr(api_as("root"), method)(template.format(bad_id), {}, format="json")
    assert_error_shape(resp, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/departments/"),
        ("patch", "/api/v1/users/{bob}/"),
        ("post", "/api/v1/users/{bob}/password/"),
        ("post", "/api/v1/api-keys/"),
        ("post", "/api/v1/quotas/"),
        ("post", "/api/v1/deployments/"),
        ("post", "/api/v1/gpu-units/assign/"),
        ("post", "/api/v1/nodes/1/maintenance/"),
    ],
)
@pytest.mark.parametrize("body", ["null", "[]", "[1, 2]", '"text"', "12", "{", '{"a": NaN}', "\x00"])
def test_malformed_body_is_400_never_500(
    api_as: Callable[[str], APIClient], personas: dict[str, object], method: str, path: str, body: str
) -> None:
    url = path.format(bob=personas["bob"].pk)  # type: ignore[attr-defined]
    resp = getattr(api_as("root"), method)(url, body, content_type="application/json")
    assert resp.status_code in (400, 404), (resp.status_code, resp.content)
    assert_error_shape(resp, resp.status_code)


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/users/?department=abc",
        "/api/v1/users/?is_active=maybe",
        "/api/v1/departments/?parent=null,null",
        "/api/v1/api-keys/?user=1.5",
        "/api/v1/quotas/?department=x",
        "/api/v1/gpus/?node=x&simulated=perhaps",
        "/api/v1/gpu-units/?gpu=x",
        "/api/v1/gpu-quotas/?department=%00",
        "/api/v1/images/?node_id=x",
        "/api/v1/deployments/?department=x",
    ],
)
def test_malformed_filter_value_is_400_naming_it(api_as: Callable[[str], APIClient], query: str) -> None:
    resp = api_as("root").get(query)
    assert_error_shape(resp, 400)
    assert resp.json()["error"]["code"] == "invalid"


def test_unknown_api_path_is_json_404(api_as: Callable[[str], APIClient]) -> None:
    # A path parameter holding "%2F" decodes to "/" and matches no route: still the error shape, not a page.
    resp = api_as("root").get("/api/v1/users/a%2Fb/")
    assert resp["Content-Type"].startswith("application/json")
    assert_error_shape(resp, 404)


def test_unknown_api_path_is_json_404_for_a_key_holder_without_csrf_token(
    bearer_for: Callable[[str], APIClient],
) -> None:
    # A key-holding client sends no CSRF token; an HTML "403 CSRF" page was the answer to POST on a bad path.
    client = bearer_for("root")
    client.handler.enforce_csrf_checks = True
    resp = client.post("/api/v1/api-keys/1.5/revoke/")
    assert resp["Content-Type"].startswith("application/json")
    assert_error_shape(resp, 404)


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/audit-log/?department=x",
        "/api/v1/audit-log/export/?department=1.5",
        "/api/v1/gpus/{gpu}/metrics/?since=0205-12-25T10:36:02Z",
    ],
)
def test_malformed_filter_found_by_the_fuzz_run_is_400(
    api_as: Callable[[str], APIClient], query: str, make_gpu: int
) -> None:
    resp = api_as("root").get(query.format(gpu=make_gpu))
    assert_error_shape(resp, 400)


def test_user_created_without_department_is_not_a_500(api_as: Callable[[str], APIClient]) -> None:
    # Found by the fuzz run: "department" is optional in the schema, but the service required it (TypeError).
    body = {"username": "auditor2", "role": "auditor", "password": "correct-horse-battery-9"}
    resp = api_as("root").post("/api/v1/users/", body, format="json")
    assert resp.status_code == 201, resp.content
    assert resp.json()["department"] is None and resp.json()["department_name"] is None


@pytest.fixture
def make_gpu(db: object) -> int:
    from appliance.gpus.models import Gpu, Node
    from appliance.gpus.simulated import collect_simulated
    from appliance.gpus.sync import apply_inventory

    node = Node.objects.create(name="n-fuzz", hostname="n-fuzz")
    apply_inventory(node.pk, collect_simulated("1x RTX 4090 24GB", "n-fuzz"))
    return Gpu.objects.get(node=node).pk


def test_too_many_form_fields_is_json_400(api_as: Callable[[str], APIClient]) -> None:
    # Found by the fuzz run: Django refuses > DATA_UPLOAD_MAX_NUMBER_FIELDS fields with its HTML 400 page.
    body = "&".join(f"units={i}" for i in range(1500))
    resp = api_as("root").post("/api/v1/gpu-units/release/", body, content_type="application/x-www-form-urlencoded")
    assert resp["Content-Type"].startswith("application/json")
    assert_error_shape(resp, 400)


def test_body_over_the_upload_limit_is_json_413(api_as: Callable[[str], APIClient], settings: object) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024  # type: ignore[attr-defined]
    resp = api_as("root").post(
        "/api/v1/departments/", '{"name": "' + "x" * 2048 + '"}', content_type="application/json"
    )
    assert resp["Content-Type"].startswith("application/json")
    assert_error_shape(resp, 413)


@pytest.mark.parametrize("field", ["max_units", "max_memory_gib"])
def test_gpu_quota_limit_beyond_the_column_is_400(
    api_as: Callable[[str], APIClient], departments: dict[str, object], field: str
) -> None:
    # Found by the fuzz run: 26381570010 GiB reached MariaDB ("Out of range value") and ended as a 500.
    dept = departments["fin"].pk  # type: ignore[attr-defined]
    body = {"department": dept, "max_units": 1, "max_memory_gib": 1, field: 26381570010}
    resp = api_as("root").post("/api/v1/gpu-quotas/", body, format="json")
    assert_error_shape(resp, 400)
    assert field in resp.json()["error"]["details"]
