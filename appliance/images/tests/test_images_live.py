"""Image imports on real parts: a Celery worker process for the node and the real Docker engine.

A tiny image is made for the test from the local base image (one layer of its own, so Docker has
something new to load), saved with ``docker save`` and removed from the engine; then it is imported
through the API and must come back, with its progress, on the node's image list. A truncated copy
of the same tarball must fail with a reason that says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import ImageNotFound

from appliance.deployments.tests import live
from appliance.gpus.choices import NodeState
from appliance.gpus.models import Node
from appliance.images.models import NodeImage

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.django_db(transaction=True)]
NODE = live.node_name("img")
BASE_IMAGE = "appliance/debian-base:bookworm"
TAG = f"appliance-test/import-{live.TOKEN}:1"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``docker save`` of a one-layer image on top of the base image; the image itself is gone after."""
    client = docker.from_env()
    try:
        client.images.get(BASE_IMAGE)
    except ImageNotFound:
        pytest.fail(f"{BASE_IMAGE} is missing; run deploy/engine-image/build.sh")
    container = client.containers.create(
        BASE_IMAGE, ["sh", "-c", f"echo {live.TOKEN} > /import-token"], network_mode="none"
    )
    try:
        container.start()
        container.wait(timeout=60)
        container.commit(repository=TAG.rsplit(":", 1)[0], tag="1")
    finally:
        container.remove(force=True)
    path = tmp_path_factory.mktemp("image") / "tiny.tar"
    with path.open("wb") as f:
        for chunk in client.images.get(TAG).save(named=True):
            f.write(chunk)
    client.images.remove(TAG)  # so the import below really loads it
    yield path
    try:
        client.images.remove(TAG, force=True)
    except ImageNotFound:
        pass


@pytest.fixture
def import_dir(tmp_path: Path, settings: Any) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    settings.APPLIANCE_IMAGE_IMPORT_DIR = str(directory)
    settings.CONSOLE_ID = live.TEST_CONSOLE_ID
    return directory


@pytest.fixture
def console(tmp_path: Path, import_dir: Path) -> Iterator[dict[str, Any]]:
    with live.console_processes(tmp_path, NODE, APPLIANCE_IMAGE_IMPORT_DIR=str(import_dir)) as procs:
        live.wait_until(lambda: Node.objects.filter(name=NODE, state=NodeState.READY).exists(), 60, "node ready")
        yield procs


def _wait_finished(api: Any, import_id: int, timeout: float) -> tuple[dict[str, Any], set[int]]:
    seen: set[int] = set()

    def finished() -> dict[str, Any] | None:
        row: dict[str, Any] = api.get(f"/api/v1/images/imports/{import_id}/").json()
        seen.add(int(row["progress"]))
        return row if row["state"] in ("done", "failed") else None

    return live.wait_until(finished, timeout, f"import {import_id} to finish", every=0.05), seen


def test_upload_import_loads_the_image_on_the_node(console: dict, tarball: Path, api_as: Any) -> None:
    api = api_as("root")
    started = time.monotonic()
    with tarball.open("rb") as f:
        resp = api.post("/api/v1/images/import/", {"file": f, "nodes": [NODE]}, format="multipart")
    queued = time.monotonic()
    assert resp.status_code == 202, resp.content
    row, seen = _wait_finished(api, resp.json()[0]["id"], 180)
    finished = time.monotonic()
    assert row["state"] == "done", row["error"]
    assert row["progress"] == 100 and row["bytes_read"] == row["size_bytes"] == tarball.stat().st_size
    assert TAG in row["loaded_tags"]
    docker.from_env().images.get(TAG)  # on the engine itself
    live.wait_until(lambda: NodeImage.objects.filter(node__name=NODE, tag=TAG).exists(), 30, "the tag in NodeImage")
    listed = api.get("/api/v1/images/", {"node": NODE, "tag": TAG}).json()["results"]
    assert [r["tag"] for r in listed] == [TAG]
    size_mib = tarball.stat().st_size / 2**20
    print(
        f"import of {size_mib:.0f} MiB: upload stored in {queued - started:.1f} s, "
        f"queued → done in {finished - queued:.1f} s; progress seen {sorted(seen)}"
    )


def test_truncated_tarball_fails_with_a_clear_error(
    console: dict, tarball: Path, import_dir: Path, api_as: Any
) -> None:
    data = tarball.read_bytes()
    (import_dir / "truncated.tar").write_bytes(data[: len(data) // 2])
    api = api_as("root")
    resp = api.post("/api/v1/images/import/", {"path": "truncated.tar", "nodes": [NODE]}, format="json")
    assert resp.status_code == 202, resp.content
    row, _ = _wait_finished(api, resp.json()[0]["id"], 120)
    assert row["state"] == "failed" and "corrupt or truncated" in row["error"], row
    assert row["loaded_tags"] == []
    print(f"truncated tarball: {row['error']}")
