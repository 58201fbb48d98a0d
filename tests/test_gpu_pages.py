"""GPU pages: the grid and its live JSON, assignment dialog, detail with charts, nodes, quotas."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from appliance.accounts.models import User
from appliance.audit.models import AuditRecord
from appliance.gpus import services
from appliance.gpus.models import GpuQuota, GpuUnit, Node
from appliance.gpus.nodes import register_node
from appliance.gpus.simulated import collect_simulated
from appliance.gpus.sync import apply_inventory
from appliance.gpus.tests.conftest import FACTS

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def units(personas: dict, departments: dict) -> list[GpuUnit]:
    node = register_node("gpu-01", FACTS)
    apply_inventory(node.pk, collect_simulated("2x RTX 4090 24GB; 1x H100 80GB mig:3g.40gb,3g.40gb", "gpu-01"))
    present = list(GpuUnit.objects.filter(state="present").order_by("pk"))
    services.assign_units(personas["root"], [present[0].pk], departments["eng"].pk)
    return present


def test_grid_shows_a_tile_per_unit_with_badges(personas: dict, units: list[GpuUnit]) -> None:
    body = _client(personas["root"]).get("/gpus/").content.decode()
    assert body.count('class="gpu-tile"') == 4  # 2 whole GPUs and 2 MIG slices
    assert 'data-testid="assign-dialog"' in body and "gpu-grid.js" in body
    assert "研发部" in body and "3g.40gb" in body


def test_member_grid_has_only_their_pool_and_no_dialog(personas: dict, units: list[GpuUnit]) -> None:
    body = _client(personas["bob"]).get("/gpus/").content.decode()
    assert body.count('class="gpu-tile"') == 1 and 'data-testid="assign-dialog"' not in body
    assert _client(personas["charlie"]).get("/gpus/").content.decode().count('class="gpu-tile"') == 0


def test_live_json_is_restricted(personas: dict, units: list[GpuUnit]) -> None:
    data = _client(personas["root"]).get("/gpus/live/").json()
    assert len(data["units"]) == 4 and data["summary"]["free"]["units"] == 3
    tile = next(t for t in data["units"] if t["id"] == units[0].pk)
    assert tile["simulated"] is True and tile["text"]["department"] == "研发部" and tile["color"].startswith("hsl(")
    assert [t["id"] for t in _client(personas["bob"]).get("/gpus/live/").json()["units"]] == [units[0].pk]


def test_assign_dialog_posts_through_the_service(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    form = {"action": "assign", "units": [units[1].pk, units[2].pk], "department_id": departments["fin"].pk}
    response = _client(personas["root"]).post("/gpus/assign/", form)
    assert response.status_code == 302
    assert set(GpuUnit.objects.filter(pk__in=form["units"]).values_list("department_id", flat=True)) == {
        departments["fin"].pk
    }
    assert AuditRecord.objects.filter(action="gpu_unit.assign", via="web").count() == 2

    _client(personas["root"]).post("/gpus/assign/", {"action": "release", "units": [units[1].pk]})
    assert GpuUnit.objects.get(pk=units[1].pk).department_id is None


def test_assign_needs_a_department_and_a_platform_admin(
    personas: dict, departments: dict, units: list[GpuUnit]
) -> None:
    page = _client(personas["root"]).post("/gpus/assign/", {"action": "assign", "units": [units[1].pk]}, follow=True)
    assert GpuUnit.objects.get(pk=units[1].pk).department_id is None
    assert 'class="msg error"' in page.content.decode()

    form = {"action": "assign", "units": [units[1].pk], "department_id": departments["eng"].pk}
    for who in ("alice", "bob", "eve"):
        _client(personas[who]).post("/gpus/assign/", form)
    assert GpuUnit.objects.get(pk=units[1].pk).department_id is None


def test_quota_error_reaches_the_page(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    services.set_quota(personas["root"], departments["eng"].pk, max_units=1, max_memory_gib=None)
    form = {"action": "assign", "units": [units[1].pk], "department_id": departments["eng"].pk}
    body = _client(personas["root"]).post("/gpus/assign/", form, follow=True).content.decode()
    assert "研发部" in body and 'class="msg error"' in body


def test_detail_has_history_charts_and_hides_other_pools(personas: dict, units: list[GpuUnit]) -> None:
    gpu_id = units[0].gpu_id
    body = _client(personas["bob"]).get(f"/gpus/{gpu_id}/").content.decode()
    assert body.count("<polyline") >= 3  # util, memory, temperature, power: one sample each so far
    assert 'data-testid="chart-util_gpu"' in body
    for range_key in ("24h", "7d", "30d", "bogus"):
        assert _client(personas["bob"]).get(f"/gpus/{gpu_id}/", {"range": range_key}).status_code == 200
    assert _client(personas["charlie"]).get(f"/gpus/{gpu_id}/").status_code == 404


def test_nodes_page_and_maintenance(personas: dict, units: list[GpuUnit]) -> None:
    node = Node.objects.get()
    body = _client(personas["root"]).get("/nodes/").content.decode()
    assert "gpu-01" in body and "unreachable" in body  # FACTS' Docker version
    _client(personas["root"]).post(f"/nodes/{node.pk}/maintenance/", {"enabled": "on", "reason": "升级驱动"})
    assert Node.objects.get().state == "maintenance"
    _client(personas["alice"]).post(f"/nodes/{node.pk}/maintenance/", {})
    assert Node.objects.get().state == "maintenance"
    _client(personas["root"]).post(f"/nodes/{node.pk}/maintenance/", {})
    assert Node.objects.get().state == "ready"


def test_quota_page(personas: dict, departments: dict, units: list[GpuUnit]) -> None:
    form: dict[str, Any] = {"department_id": departments["fin"].pk, "max_units": 2, "max_memory_gib": ""}
    assert _client(personas["root"]).post("/gpu-quotas/", form).status_code == 302
    quota = GpuQuota.objects.get()
    assert (quota.max_units, quota.max_memory_gib) == (2, None)
    assert _client(personas["dave"]).post("/gpu-quotas/", {**form, "max_units": 9}).status_code == 200
    assert GpuQuota.objects.get().max_units == 2
    assert "财务部" in _client(personas["dave"]).get("/gpu-quotas/").content.decode()


@pytest.mark.parametrize("url", ["/nodes/", "/gpus/", "/gpu-quotas/", "/gpus/live/"])
def test_pages_need_a_login(url: str) -> None:
    assert Client().get(url).status_code == 302
