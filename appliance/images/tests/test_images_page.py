"""The Images page: read-only for department admins and auditors, catalog changes and imports for platform admins."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from appliance.audit.models import AuditRecord
from appliance.deployments.tests.factories import assign_all, simulated_node, with_images
from appliance.images.models import EngineImage

pytestmark = pytest.mark.django_db
LLAMA = "appliance/llamacpp-cpu:latest"


@pytest.fixture
def nodes(personas: dict, departments: dict, settings: Any) -> None:
    settings.APPLIANCE_ENGINE_IMAGES = {**settings.APPLIANCE_ENGINE_IMAGES, "llamacpp": LLAMA}
    n1, n2 = simulated_node("n1"), simulated_node("n2", "1x RTX 4090 24GB")
    assign_all(personas["root"], n1, departments["eng"])
    with_images(n1, LLAMA)
    with_images(n2, "busybox:1")


def _client(user: Any, language: str = "en") -> Client:
    client = Client()
    client.force_login(user)
    client.cookies["django_language"] = language
    return client


def test_platform_admin_sees_catalog_gaps_and_the_import_form(nodes: None, personas: dict) -> None:
    body = _client(personas["root"]).get("/images/").content.decode()
    assert 'data-testid="import-form"' in body and 'href="/images/"' in body
    assert 'data-testid="missing-llamacpp-n2"' in body and "?node=n2#import" in body
    assert 'data-testid="node-images-n1"' in body and LLAMA in body and "busybox:1" in body
    assert "/api/v1/images/import/" in body and "/api/v1/images/imports/" in body


@pytest.mark.parametrize("persona", ["alice", "eve"])
def test_department_admins_and_auditors_read_only(nodes: None, personas: dict, persona: str) -> None:
    body = _client(personas[persona]).get("/images/").content.decode()
    assert 'href="/images/"' in body  # in the menu
    assert 'data-testid="engine-catalog"' in body and 'data-testid="import-form"' not in body
    assert "/images/engines/" not in body and "#import" not in body


def test_department_admin_sees_only_their_pools_nodes(nodes: None, personas: dict) -> None:
    body = _client(personas["alice"]).get("/images/").content.decode()
    assert 'data-testid="node-images-n1"' in body and 'data-testid="node-images-n2"' not in body


def test_member_has_no_menu_entry(nodes: None, personas: dict) -> None:
    assert 'href="/images/"' not in _client(personas["bob"]).get("/").content.decode()


def test_catalog_change_from_the_page(nodes: None, personas: dict) -> None:
    resp = _client(personas["root"]).post("/images/engines/vllm/", {"image": "vllm/vllm-openai:v0.8.5"}, follow=True)
    assert resp.status_code == 200 and "vllm/vllm-openai:v0.8.5" in resp.content.decode()
    assert EngineImage.objects.get(engine="vllm").image == "vllm/vllm-openai:v0.8.5"
    assert AuditRecord.objects.filter(action="engine_image.change", via="web").exists()
    resp = _client(personas["alice"]).post("/images/engines/vllm/", {"image": "x/y:1"}, follow=True)
    assert "Only platform admins" in resp.content.decode()
    assert EngineImage.objects.get(engine="vllm").image == "vllm/vllm-openai:v0.8.5"
    resp = _client(personas["root"]).post("/images/engines/vllm/", {"image": "Bad Tag"}, follow=True)
    assert "not a valid image reference" in resp.content.decode()


def test_page_in_chinese(nodes: None, personas: dict) -> None:
    body = _client(personas["root"], "zh-hans").get("/images/").content.decode()
    assert "镜像" in body and "引擎目录" in body and "导入镜像" in body
