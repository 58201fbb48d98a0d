"""Uploads of image tarballs: streamed into the import directory, hashed, size-limited, refused before
a byte is written for anyone but a platform admin (the session's CSRF check included)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from appliance.deployments.tests.factories import simulated_node
from appliance.images.models import ImageImport
from appliance.images.tests.test_images_api import make_tar

pytestmark = pytest.mark.django_db


@pytest.fixture
def node(db: Any) -> Any:
    return simulated_node("n1")


@pytest.fixture
def tarball(tmp_path: Path) -> bytes:
    return make_tar(tmp_path / "engine.tar").read_bytes()


def _file(data: bytes, name: str = "engine.tar") -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


def _stored(import_dir: Path) -> list[str]:
    uploads = import_dir / "uploads"
    return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []


def test_upload_is_stored_by_checksum_and_queued(
    node: Any, import_dir: Path, tarball: bytes, api_as: Callable, django_capture_on_commit_callbacks: Any
) -> None:
    digest = hashlib.sha256(tarball).hexdigest()
    with django_capture_on_commit_callbacks() as callbacks:
        resp = api_as("root").post(
            "/api/v1/images/import/",
            {"file": _file(tarball, "../../My Engine.tar"), "nodes": ["n1"], "sha256": digest.upper()},
            format="multipart",
        )
    assert resp.status_code == 202, resp.content
    row = resp.json()[0]
    assert row["sha256"] == digest and row["size_bytes"] == len(tarball) and row["state"] == "pending"
    assert _stored(import_dir) == [f"{digest[:16]}-My_Engine.tar"]
    assert Path(row["path"]).read_bytes() == tarball and len(callbacks) == 1


def test_wrong_checksum_is_400_and_leaves_nothing(
    node: Any, import_dir: Path, tarball: bytes, api_as: Callable
) -> None:
    resp = api_as("root").post(
        "/api/v1/images/import/", {"file": _file(tarball), "nodes": ["n1"], "sha256": "0" * 64}, format="multipart"
    )
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith("sha256:")
    assert _stored(import_dir) == [] and not ImageImport.objects.exists()


def test_not_a_tarball_is_400(node: Any, import_dir: Path, api_as: Callable) -> None:
    resp = api_as("root").post(
        "/api/v1/images/import/", {"file": _file(b"hello" * 200), "nodes": ["n1"]}, format="multipart"
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "not_a_tarball"
    assert resp.json()["error"]["message"].startswith("file:") and _stored(import_dir) == []


@pytest.mark.parametrize("limit", [4096, 1])  # cut while streaming; refused from Content-Length alone
def test_upload_over_the_limit_is_413(
    node: Any, import_dir: Path, api_as: Callable, settings: Any, limit: int, tmp_path: Path
) -> None:
    settings.APPLIANCE_IMAGE_UPLOAD_MAX_BYTES = limit
    data = make_tar(tmp_path / "big.tar").read_bytes() + b"\0" * (2 * 1024 * 1024)
    resp = api_as("root").post("/api/v1/images/import/", {"file": _file(data), "nodes": ["n1"]}, format="multipart")
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "too_large"
    assert _stored(import_dir) == [] and not ImageImport.objects.exists()


def test_both_file_and_path_is_400(node: Any, import_dir: Path, tarball: bytes, api_as: Callable) -> None:
    resp = api_as("root").post(
        "/api/v1/images/import/", {"file": _file(tarball), "path": "x.tar", "nodes": ["n1"]}, format="multipart"
    )
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith("path:")
    assert _stored(import_dir) == []


@pytest.mark.parametrize("persona", ["alice", "eve", "bob"])
def test_non_admin_upload_writes_nothing(
    node: Any, import_dir: Path, tarball: bytes, api_as: Callable, persona: str
) -> None:
    resp = api_as(persona).post("/api/v1/images/import/", {"file": _file(tarball), "nodes": ["n1"]}, format="multipart")
    assert resp.status_code == 403
    assert _stored(import_dir) == [] and not ImageImport.objects.exists()


def _session(user: Any) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/images/")
    return client, client.cookies["csrftoken"].value


def test_session_upload_parsed_by_the_csrf_check_is_still_gated(
    node: Any, import_dir: Path, tarball: bytes, personas: dict
) -> None:
    client, token = _session(personas["alice"])
    resp = client.post("/api/v1/images/import/", {"file": _file(tarball), "nodes": ["n1"]}, HTTP_X_CSRFTOKEN=token)
    assert resp.status_code == 403 and _stored(import_dir) == []
    client, token = _session(personas["root"])
    resp = client.post("/api/v1/images/import/", {"file": _file(tarball), "nodes": ["n1"]}, HTTP_X_CSRFTOKEN=token)
    assert resp.status_code == 202, resp.content
    assert len(_stored(import_dir)) == 1
    resp = client.post("/api/v1/images/import/", {"file": _file(tarball), "nodes": ["n1"]})  # no CSRF token
    assert resp.status_code == 403 and len(_stored(import_dir)) == 1
