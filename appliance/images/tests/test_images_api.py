"""Images API per persona: node image lists, the engine catalog (validation, audit, image_for), imports by path."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from appliance.audit.models import AuditRecord
from appliance.audit.services import verify_chain
from appliance.deployments.tests.factories import assign_all, simulated_node, with_images
from appliance.images.catalog import image_for
from appliance.images.models import EngineImage, ImageImport

pytestmark = pytest.mark.django_db
LLAMA = "appliance/llamacpp-cpu:latest"


@pytest.fixture
def nodes(personas: dict, departments: dict, settings: Any) -> dict[str, Any]:
    """n1 holds eng's pool and has the llama.cpp image; n2 holds no pool and has nothing."""
    settings.APPLIANCE_ENGINE_IMAGES = {**settings.APPLIANCE_ENGINE_IMAGES, "llamacpp": LLAMA}
    n1, n2 = simulated_node("n1"), simulated_node("n2", "1x RTX 4090 24GB")
    assign_all(personas["root"], n1, departments["eng"])
    with_images(n1, LLAMA, "busybox:1")
    return {"n1": n1, "n2": n2}


def make_tar(path: Path) -> Path:
    member = path.parent / "manifest.json"
    member.write_text("[]")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(member, arcname="manifest.json")
    return path


def _tags(resp: Any) -> list[tuple[str, str]]:
    return [(r["node"], r["tag"]) for r in resp.json()["results"]]


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("root", [("n1", LLAMA), ("n1", "busybox:1")]),
        ("eve", [("n1", LLAMA), ("n1", "busybox:1")]),
        ("alice", [("n1", LLAMA), ("n1", "busybox:1")]),
        ("bob", [("n1", LLAMA), ("n1", "busybox:1")]),
        ("dave", []),  # fin's pool holds no units on any node
        ("charlie", []),
    ],
)
def test_node_images_follow_node_visibility(nodes: dict, api_as: Callable, persona: str, expected: list) -> None:
    resp = api_as(persona).get("/api/v1/images/")
    assert resp.status_code == 200
    assert _tags(resp) == expected


def test_node_images_filters_and_anonymous(nodes: dict, api_as: Callable) -> None:
    api = api_as("root")
    assert _tags(api.get("/api/v1/images/", {"tag": LLAMA})) == [("n1", LLAMA)]
    assert _tags(api.get("/api/v1/images/", {"node": "n2"})) == []
    assert APIClient().get("/api/v1/images/").status_code in (401, 403)


def test_catalog_shows_which_nodes_have_each_image(
    nodes: dict, api_as: Callable, django_assert_num_queries: Any
) -> None:
    api = api_as("root")
    with django_assert_num_queries(3):  # catalog rows, visible nodes, their copies of the images
        resp = api.get("/api/v1/engine-images/")
    entries = {e["engine"]: e for e in resp.json()["results"]}
    assert set(entries) == {"vllm", "ollama", "llamacpp"}
    assert entries["llamacpp"]["present_on"] == ["n1"] and entries["llamacpp"]["missing_on"] == ["n2"]
    assert entries["vllm"]["missing_on"] == ["n1", "n2"] and entries["vllm"]["customized"] is False
    # A department admin sees only the nodes of their pool.
    alice = {e["engine"]: e for e in api_as("alice").get("/api/v1/engine-images/").json()["results"]}
    assert alice["llamacpp"]["present_on"] == ["n1"] and alice["llamacpp"]["missing_on"] == []
    assert api_as("bob").get("/api/v1/engine-images/llamacpp/").status_code == 200
    assert api_as("eve").get("/api/v1/engine-images/nope/").status_code == 404


def test_catalog_query_count_does_not_grow_with_nodes(nodes: dict, api_as: Callable) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    api = api_as("eve")
    with CaptureQueriesContext(connection) as before:
        api.get("/api/v1/engine-images/")
    for i in range(3):
        with_images(simulated_node(f"x{i}", "1x RTX 4090 24GB"), LLAMA)
    with CaptureQueriesContext(connection) as after:
        api.get("/api/v1/engine-images/")
    assert len(after) == len(before)


def test_platform_admin_changes_the_catalog_audited_and_used_by_image_for(nodes: dict, api_as: Callable) -> None:
    resp = api_as("root").put("/api/v1/engine-images/vllm/", {"image": "docker.io/vllm/vllm-openai"}, format="json")
    assert resp.status_code == 200, resp.content
    assert resp.json()["image"] == "vllm/vllm-openai:latest" and resp.json()["customized"] is True
    assert image_for("vllm") == "vllm/vllm-openai:latest"
    record = AuditRecord.objects.get(action="engine_image.change")
    assert record.actor_name == "root" and record.after == {"engine": "vllm", "image": "vllm/vllm-openai:latest"}
    assert record.before is not None and record.before["image"] != "vllm/vllm-openai:latest"
    resp = api_as("root").patch("/api/v1/engine-images/vllm/", {"image": "vllm/vllm-openai:v0.8.5"}, format="json")
    assert resp.status_code == 200 and image_for("vllm") == "vllm/vllm-openai:v0.8.5"
    assert api_as("root").delete("/api/v1/engine-images/vllm/").status_code == 204
    assert not EngineImage.objects.exists()
    assert AuditRecord.objects.filter(action="engine_image.reset").count() == 1 and verify_chain().ok


@pytest.mark.parametrize("persona", ["alice", "bob", "eve", "dave"])
def test_only_platform_admins_change_the_catalog(nodes: dict, api_as: Callable, persona: str) -> None:
    api = api_as(persona)
    assert api.put("/api/v1/engine-images/vllm/", {"image": "x/y:1"}, format="json").status_code == 403
    assert api.delete("/api/v1/engine-images/vllm/").status_code == 403
    assert not EngineImage.objects.exists() and not AuditRecord.objects.filter(action__startswith="engine_").exists()


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/engine-images/tgi/", {"image": "x/y:1"}, "engine"),
        ("/api/v1/engine-images/vllm/", {"image": "Not A Tag"}, "image"),
        ("/api/v1/engine-images/vllm/", {"image": "x/y@sha256:" + "a" * 64}, "image"),
        ("/api/v1/engine-images/vllm/", {"image": "x/y:1", "extra": 1}, "extra"),
        ("/api/v1/engine-images/vllm/", {}, "image"),
    ],
)
def test_catalog_validation_names_the_field(nodes: dict, api_as: Callable, url: str, body: dict, field: str) -> None:
    resp = api_as("root").put(url, body, format="json")
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert error["message"].startswith(f"{field}:") and field in error["details"]


def test_import_by_path_queues_one_row_per_node(
    nodes: dict, import_dir: Path, api_as: Callable, django_capture_on_commit_callbacks: Any
) -> None:
    make_tar(import_dir / "engine.tar")
    with django_capture_on_commit_callbacks() as callbacks:
        resp = api_as("root").post(
            "/api/v1/images/import/", {"path": "engine.tar", "nodes": ["n1", "n2"]}, format="json"
        )
    assert resp.status_code == 202, resp.content
    rows = resp.json()
    assert [r["node"] for r in sorted(rows, key=lambda r: r["node"])] == ["n1", "n2"]
    assert {r["state"] for r in rows} == {"pending"} and rows[0]["size_bytes"] == (
        import_dir / "engine.tar"
    ).stat().st_size
    assert len(callbacks) == 2  # one import task per node queue, sent once the rows commit
    assert AuditRecord.objects.filter(action="image.import").count() == 2
    again = api_as("root").post("/api/v1/images/import/", {"path": "engine.tar", "nodes": ["n1"]}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "busy"


def test_import_progress_is_visible_per_node(nodes: dict, import_dir: Path, personas: dict, api_as: Callable) -> None:
    imp = ImageImport.objects.create(node=nodes["n1"], path=str(import_dir / "a.tar"), created_by=personas["root"])
    other = ImageImport.objects.create(node=nodes["n2"], path=str(import_dir / "a.tar"), created_by=personas["root"])
    for persona in ("root", "eve", "alice"):
        resp = api_as(persona).get(f"/api/v1/images/imports/{imp.pk}/")
        assert resp.status_code == 200 and resp.json()["progress"] == 0 and resp.json()["state"] == "pending"
    assert api_as("alice").get(f"/api/v1/images/imports/{other.pk}/").status_code == 404
    assert api_as("dave").get(f"/api/v1/images/imports/{imp.pk}/").status_code == 404
    assert [r["id"] for r in api_as("alice").get("/api/v1/images/imports/").json()["results"]] == [imp.pk]


@pytest.mark.parametrize("persona", ["alice", "bob", "eve", "dave"])
def test_only_platform_admins_import(nodes: dict, import_dir: Path, api_as: Callable, persona: str) -> None:
    make_tar(import_dir / "engine.tar")
    resp = api_as(persona).post("/api/v1/images/import/", {"path": "engine.tar", "nodes": ["n1"]}, format="json")
    assert resp.status_code == 403 and not ImageImport.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"path": "engine.tar"}, "nodes", "invalid"),
        ({"path": "engine.tar", "nodes": []}, "nodes", "invalid"),
        ({"path": "engine.tar", "nodes": ["ghost"]}, "nodes", "unknown_node"),
        ({"nodes": ["n1"]}, "file", "invalid"),
        ({"path": "missing.tar", "nodes": ["n1"]}, "path", "file_not_found"),
        ({"path": "notes.txt", "nodes": ["n1"]}, "path", "not_a_tarball"),
        ({"path": "engine.tar", "nodes": ["n1"], "sha256": "xyz"}, "sha256", "invalid"),
        ({"path": "engine.tar", "nodes": ["n1"], "node": "n1"}, "node", "invalid"),
    ],
)
def test_import_validation_names_the_field(
    nodes: dict, import_dir: Path, api_as: Callable, body: dict, field: str, code: str
) -> None:
    make_tar(import_dir / "engine.tar")
    (import_dir / "notes.txt").write_text("not an image")
    resp = api_as("root").post("/api/v1/images/import/", body, format="json")
    assert resp.status_code == 400, resp.content
    error = resp.json()["error"]
    assert error["message"].startswith(f"{field}:") and error["code"] == code
    assert not ImageImport.objects.exists()


@pytest.mark.parametrize("path", ["../outside.tar", "/etc/passwd", "sub/../../outside.tar", "link.tar", "", "."])
def test_path_traversal_is_refused(nodes: dict, import_dir: Path, api_as: Callable, path: str) -> None:
    outside = make_tar(import_dir.parent / "outside.tar")
    os.symlink(outside, import_dir / "link.tar")  # a symlink inside the directory leading out of it
    resp = api_as("root").post("/api/v1/images/import/", {"path": path, "nodes": ["n1"]}, format="json")
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["message"].startswith("path:") and not ImageImport.objects.exists()


def test_unreachable_node_is_refused(nodes: dict, import_dir: Path, api_as: Callable) -> None:
    make_tar(import_dir / "engine.tar")
    nodes["n2"].state = "unreachable"
    nodes["n2"].save(update_fields=["state"])
    resp = api_as("root").post("/api/v1/images/import/", {"path": "engine.tar", "nodes": ["n1", "n2"]}, format="json")
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "node_unreachable"
    assert not ImageImport.objects.exists()
