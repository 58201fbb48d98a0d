"""The nodes/GPUs/units/quotas API: what each persona sees and may do, and constant query counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from appliance.gpus import services
from appliance.gpus.choices import UnitKind
from appliance.gpus.models import Gpu, GpuUnit, Node

from .conftest import MakeNode, units_of

pytestmark = pytest.mark.django_db
Api = Callable[[str], APIClient]


@pytest.fixture
def fleet(make_node: MakeNode, personas: dict, departments: dict) -> dict[str, Any]:
    """gpu-01: 2 whole GPUs (eng, free); gpu-02: one MIG GPU, slices in eng_ml and fin."""
    plain = make_node("gpu-01", "2x RTX 4090 24GB")
    mig = make_node("gpu-02", "1x H100 80GB mig:3g.40gb,3g.40gb")
    whole, free = units_of(plain)
    slice_ml, slice_fin = GpuUnit.objects.filter(gpu__node=mig, kind=UnitKind.MIG).order_by("gi_id")
    root = personas["root"]
    services.assign_units(root, [whole.pk], departments["eng"].pk)
    services.assign_units(root, [slice_ml.pk], departments["eng_ml"].pk)
    services.assign_units(root, [slice_fin.pk], departments["fin"].pk)
    return {"plain": plain, "mig": mig, "whole": whole, "free": free, "slice_ml": slice_ml, "slice_fin": slice_fin}


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return sorted(row["id"] for row in response.json()["results"])


@pytest.mark.parametrize(
    ("who", "units"),
    [
        ("root", ["whole", "free", "slice_ml", "slice_fin"]),
        ("eve", ["whole", "free", "slice_ml", "slice_fin"]),
        ("alice", ["whole", "slice_ml"]),  # department admin: the eng subtree
        ("bob", ["whole"]),
        ("carol", ["slice_ml"]),
        ("charlie", ["slice_fin"]),
    ],
)
def test_units_visible_per_persona(api_as: Api, fleet: dict, who: str, units: list[str]) -> None:
    assert _ids(api_as(who).get("/api/v1/gpu-units/")) == sorted(fleet[name].pk for name in units)


def test_department_user_sees_a_shared_gpu_with_only_their_slice(api_as: Api, fleet: dict) -> None:
    body = api_as("charlie").get("/api/v1/gpus/").json()
    [gpu] = body["results"]
    assert gpu["mig_mode_current"] is True and gpu["simulated"] is True
    assert [unit["id"] for unit in gpu["units"]] == [fleet["slice_fin"].pk]
    assert gpu["units"][0]["department_name"] == "财务部"


def test_other_departments_gpus_are_not_found(api_as: Api, fleet: dict) -> None:
    plain_gpu = fleet["free"].gpu_id
    assert api_as("charlie").get(f"/api/v1/gpus/{plain_gpu}/").status_code == 404
    assert api_as("charlie").get(f"/api/v1/gpu-units/{fleet['whole'].pk}/").status_code == 404
    assert api_as("charlie").get(f"/api/v1/gpus/{plain_gpu}/metrics/").status_code == 404
    assert api_as("bob").get(f"/api/v1/gpus/{fleet['whole'].gpu_id}/").status_code == 200


def test_gpu_filters(api_as: Api, fleet: dict, departments: dict) -> None:
    root = api_as("root")
    plain_gpus = sorted(Gpu.objects.filter(node=fleet["plain"]).values_list("pk", flat=True))
    assert _ids(root.get("/api/v1/gpus/", {"node": fleet["plain"].pk})) == plain_gpus
    assert _ids(root.get("/api/v1/gpus/", {"free": "true"})) == [fleet["free"].gpu_id]
    assert _ids(root.get("/api/v1/gpus/", {"department": departments["fin"].pk})) == [fleet["slice_fin"].gpu_id]
    assert _ids(root.get("/api/v1/gpus/", {"state": "missing"})) == []
    assert root.get("/api/v1/gpus/", {"free": "maybe"}).status_code == 400


def test_unit_filters(api_as: Api, fleet: dict, departments: dict) -> None:
    root = api_as("root")
    assert _ids(root.get("/api/v1/gpu-units/", {"free": "true"})) == [fleet["free"].pk]
    assert _ids(root.get("/api/v1/gpu-units/", {"kind": "mig", "department": departments["eng_ml"].pk})) == [
        fleet["slice_ml"].pk
    ]
    assert len(_ids(root.get("/api/v1/gpu-units/", {"free": "false"}))) == 3


@pytest.mark.parametrize(("who", "nodes"), [("root", 2), ("eve", 2), ("bob", 1), ("alice", 2), ("charlie", 1)])
def test_nodes_visible_per_persona(api_as: Api, fleet: dict, who: str, nodes: int) -> None:
    body = api_as(who).get("/api/v1/nodes/").json()
    assert len(body["results"]) == nodes
    assert {"docker_version", "driver_version", "cuda_version", "state", "gpu_count"} <= set(body["results"][0])


def test_maintenance_via_api(api_as: Api, fleet: dict) -> None:
    url = f"/api/v1/nodes/{fleet['plain'].pk}/maintenance/"
    response = api_as("root").post(url, {"enabled": True, "reason": "换卡"}, format="json")
    assert response.status_code == 200 and response.json()["state"] == "maintenance"
    assert api_as("root").post(url, {"enabled": False}, format="json").json()["state"] == "ready"


@pytest.mark.parametrize(("who", "status"), [("alice", 403), ("bob", 403), ("eve", 403), ("dave", 404)])
def test_maintenance_denied(api_as: Api, fleet: dict, who: str, status: int) -> None:
    url = f"/api/v1/nodes/{fleet['plain'].pk}/maintenance/"
    response = api_as(who).post(url, {"enabled": True}, format="json")
    assert response.status_code == status
    assert response.json()["error"]["code"] in ("permission_denied", "not_found")
    assert Node.objects.get(pk=fleet["plain"].pk).state == "ready"


def test_assign_release_move_via_api(api_as: Api, fleet: dict, departments: dict) -> None:
    root, unit = api_as("root"), fleet["free"]
    response = root.post("/api/v1/gpu-units/assign/", {"units": [unit.pk], "department": departments["fin"].pk})
    assert response.status_code == 200
    assert response.json()[0]["department_name"] == "财务部" and response.json()[0]["simulated"] is True

    response = root.post("/api/v1/gpu-units/move/", {"units": [unit.pk], "department": departments["eng"].pk})
    assert response.status_code == 200 and response.json()[0]["department"] == departments["eng"].pk

    assert root.post("/api/v1/gpu-units/release/", {"units": [unit.pk]}).json()[0]["department"] is None
    again = root.post("/api/v1/gpu-units/release/", {"units": [unit.pk]})
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_assigned"


@pytest.mark.parametrize("who", ["alice", "bob", "charlie", "dave", "eve"])
def test_assignment_endpoints_denied(api_as: Api, fleet: dict, departments: dict, who: str) -> None:
    client, unit = api_as(who), fleet["free"]
    for path, body in (
        ("assign", {"units": [unit.pk], "department": departments["eng"].pk}),
        ("release", {"units": [fleet["whole"].pk]}),
        ("move", {"units": [fleet["whole"].pk], "department": departments["fin"].pk}),
    ):
        response = client.post(f"/api/v1/gpu-units/{path}/", body, format="json")
        assert response.status_code == 403, (path, response.content)
    assert GpuUnit.objects.get(pk=unit.pk).department_id is None


def test_quota_exceeded_is_409_with_the_numbers(api_as: Api, fleet: dict, departments: dict) -> None:
    root = api_as("root")
    quota = {"department": departments["eng"].pk, "max_units": 1, "max_memory_gib": 24}
    assert root.post("/api/v1/gpu-quotas/", quota, format="json").status_code == 200

    response = root.post("/api/v1/gpu-units/assign/", {"units": [fleet["free"].pk], "department": quota["department"]})

    error = response.json()["error"]
    assert response.status_code == 409 and error["code"] == "quota_exceeded"
    assert "研发部" in error["message"] and error["details"]["units"] == 1 and error["details"]["add_memory"] == "24"


def test_quotas_visible_and_editable_per_persona(api_as: Api, fleet: dict, departments: dict) -> None:
    root = api_as("root")
    for code in ("eng", "eng_ml", "fin"):
        root.post(
            "/api/v1/gpu-quotas/",
            {"department": departments[code].pk, "max_units": 4, "max_memory_gib": None},
            format="json",
        )
    listed = {row["department_name"]: row for row in root.get("/api/v1/gpu-quotas/").json()["results"]}
    assert listed["研发部"]["used_units"] == 1 and listed["研发部"]["used_memory_gib"] == 24.0
    assert len(_ids(api_as("alice").get("/api/v1/gpu-quotas/"))) == 2
    assert len(_ids(api_as("bob").get("/api/v1/gpu-quotas/"))) == 1

    eng_quota = listed["研发部"]["id"]
    assert api_as("alice").patch(f"/api/v1/gpu-quotas/{eng_quota}/", {"max_units": 99}).status_code == 403
    assert api_as("charlie").patch(f"/api/v1/gpu-quotas/{eng_quota}/", {"max_units": 99}).status_code == 404
    response = root.patch(f"/api/v1/gpu-quotas/{eng_quota}/", {"max_units": 9}, format="json")
    assert response.json()["max_units"] == 9 and response.json()["max_memory_gib"] is None


def test_summary_for_a_member(api_as: Api, fleet: dict) -> None:
    body = api_as("bob").get("/api/v1/gpu-units/summary/").json()
    assert body["total"]["units"] == 4 and body["free"]["units"] == 1
    assert [pool["department_name"] for pool in body["pools"]] == ["研发部"]


def test_metrics_endpoint(api_as: Api, fleet: dict) -> None:
    gpu_id = fleet["whole"].gpu_id
    body = api_as("bob").get(f"/api/v1/gpus/{gpu_id}/metrics/", {"step": 10}).json()
    assert body["gpu"] == gpu_id and body["resolution"] == "raw" and len(body["points"]) == 1
    assert {"at", "util_gpu", "memory_used", "temperature_c", "power_draw_w"} <= set(body["points"][0])
    bad = api_as("bob").get(f"/api/v1/gpus/{gpu_id}/metrics/", {"step": 0})
    assert bad.status_code == 400


def test_anonymous_is_refused(fleet: dict) -> None:
    for url in ("/api/v1/nodes/", "/api/v1/gpus/", "/api/v1/gpu-units/", "/api/v1/gpu-quotas/"):
        assert APIClient().get(url).status_code == 401


def _fleet_of(first: int, nodes: int, per_node: int = 8) -> None:
    """Rows straight into the tables: the query count, not the sync, is under test here."""
    made = Node.objects.bulk_create([Node(name=f"n{i:02d}", state="ready") for i in range(first, first + nodes)])
    gpus = Gpu.objects.bulk_create(
        [Gpu(node=node, index=i, uuid=f"GPU-{node.name}-{i}", simulated=True) for node in made for i in range(per_node)]
    )
    GpuUnit.objects.bulk_create([GpuUnit(gpu=gpu, kind=UnitKind.GPU, uuid=gpu.uuid, simulated=True) for gpu in gpus])


def _pool_first(count: int, department: Any) -> None:
    GpuUnit.objects.filter(pk__in=list(GpuUnit.objects.values_list("pk", flat=True)[:count])).update(
        department=department
    )


def _queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, {"page_size": 500})
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("who", ["root", "bob"])
def test_gpu_list_query_count_is_constant(api_as: Api, personas: dict, departments: dict, who: str) -> None:
    _fleet_of(0, 2)
    _pool_first(4, departments["eng"])
    client = api_as(who)
    small = {url: _queries(client, url) for url in ("/api/v1/gpus/", "/api/v1/gpu-units/", "/api/v1/nodes/")}
    _fleet_of(2, 62)
    _pool_first(100, departments["eng"])
    assert Gpu.objects.count() == 512
    large = {url: _queries(client, url) for url in small}
    assert large == small
    if who == "root":
        assert len(client.get("/api/v1/gpus/", {"page_size": 500}).json()["results"]) == 500
