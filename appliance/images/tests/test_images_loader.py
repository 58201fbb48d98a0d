"""The node's side of an import, with Docker's load replaced by a fake that reads the stream like Docker:
claim once, throttled progress, checksum held to the last chunk, reasons a person can act on, the reaper."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from appliance.audit.models import AuditRecord
from appliance.deployments import docker_driver
from appliance.deployments.tests.factories import simulated_node
from appliance.images import loader as image_loader
from appliance.images.choices import ImportState
from appliance.images.models import ImageImport, NodeImage
from appliance.images.tests.test_images_api import make_tar

pytestmark = pytest.mark.django_db
MIB = 1024 * 1024


@pytest.fixture
def node(db: Any, settings: Any) -> Any:
    settings.NODE_NAME = "n1"
    return simulated_node("n1")


@pytest.fixture
def tarball(import_dir: Path) -> Path:
    """A tar header followed by 20 MiB, so the stream has 21 chunks."""
    path = make_tar(import_dir / "engine.tar")
    with path.open("ab") as f:
        f.write(os.urandom(20 * MIB))
    return path


class FakeDocker:
    """Reads the whole stream as Docker would, then answers like ``docker load`` (or fails)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tags: list[str], error: Exception | None = None) -> None:
        self.received = 0
        self.tags, self.error = tags, error
        monkeypatch.setattr(docker_driver, "load_image", self.load)
        monkeypatch.setattr(docker_driver, "local_images", self.local_images)

    def load(self, chunks: Iterable[bytes], timeout: float) -> list[str]:
        for chunk in chunks:
            self.received += len(chunk)
        if self.error is not None:
            raise self.error
        return self.tags

    def local_images(self) -> list[dict[str, Any]]:
        return [{"tag": t, "image_id": "sha256:" + "1" * 64, "size_bytes": 5, "created": ""} for t in self.tags]


def _import(node: Any, path: Path | str, personas: dict, sha256: str = "") -> ImageImport:
    return ImageImport.objects.create(node=node, path=str(path), sha256=sha256, created_by=personas["root"])


def _row(imp: ImageImport) -> ImageImport:
    imp.refresh_from_db()
    return imp


def test_load_ends_done_with_tags_and_refreshes_the_node(
    node: Any, tarball: Path, personas: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDocker(monkeypatch, ["appliance-test/x:1"])
    imp = _import(node, tarball, personas, hashlib.sha256(tarball.read_bytes()).hexdigest())
    assert image_loader.run_import(imp.pk).startswith("loaded appliance-test/x:1")
    row = _row(imp)
    assert (row.state, row.progress, row.loaded_tags) == (ImportState.DONE, 100, ["appliance-test/x:1"])
    assert row.bytes_read == row.size_bytes == tarball.stat().st_size == fake.received
    assert row.started_at and row.finished_at and row.error == ""
    assert list(NodeImage.objects.filter(node=node).values_list("tag", flat=True)) == ["appliance-test/x:1"]
    assert AuditRecord.objects.filter(action="image.import.done", actor_name="system:command").exists()
    # A second delivery of the same task claims nothing and changes nothing.
    assert image_loader.run_import(imp.pk) == "not pending (already claimed or over)"
    assert fake.received == tarball.stat().st_size


def test_another_nodes_import_is_left_alone(node: Any, tarball: Path, personas: dict, settings: Any) -> None:
    imp = _import(simulated_node("n2"), tarball, personas)
    assert image_loader.run_import(imp.pk) == "not for this node"
    assert _row(imp).state == ImportState.PENDING


def test_progress_is_written_every_five_percent(node: Any, tarball: Path, personas: dict) -> None:
    imp = _import(node, tarball, personas)
    image_loader.claim(imp.pk)
    progress = image_loader.Progress(imp.pk, total=100 * MIB)
    seen = []
    for _ in range(100):
        progress.add(MIB)
        seen.append(_row(imp).progress)
    assert progress.writes == 19  # at 5, 10, … 95 %: not one write per chunk
    assert seen[9] == 10 and max(seen) == 95
    assert progress.percent == image_loader.READ_PROGRESS_CAP  # 100 % only once Docker says it loaded
    assert _row(imp).bytes_read == 95 * MIB  # as of the last write; the end of the load writes the rest


def test_checksum_mismatch_cuts_the_stream_before_its_end(
    node: Any, tarball: Path, personas: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDocker(monkeypatch, ["appliance-test/x:1"])
    imp = _import(node, tarball, personas, sha256="0" * 64)
    assert image_loader.run_import(imp.pk) == "failed"
    row = _row(imp)
    assert row.state == ImportState.FAILED and "checksum mismatch" in row.error and "nothing was loaded" in row.error
    assert fake.received < tarball.stat().st_size  # Docker never got the last chunk


@pytest.mark.parametrize(
    ("docker_error", "reason"),
    [
        ("Error processing tar file(exit status 1): unexpected EOF", "corrupt or truncated"),
        ("open /var/lib/docker/tmp/docker-import-1/repositories: no such file or directory", "not a `docker save`"),
        ("write /var/lib/docker/overlay2/x/diff/y: no space left on device", "disk of node n1 is full"),
        ("something else", "docker load failed: something else"),
    ],
)
def test_docker_errors_become_reasons(
    node: Any, tarball: Path, personas: dict, monkeypatch: pytest.MonkeyPatch, docker_error: str, reason: str
) -> None:
    FakeDocker(monkeypatch, [], docker_driver.ImageLoadFailed(docker_error))
    imp = _import(node, tarball, personas)
    image_loader.run_import(imp.pk)
    row = _row(imp)
    assert row.state == ImportState.FAILED and reason in row.error
    assert AuditRecord.objects.filter(action="image.import.failed").exists()


def _setup_missing(import_dir: Path) -> Path:
    return import_dir / "gone.tar"


def _setup_not_tar(import_dir: Path) -> Path:
    path = import_dir / "random.bin"
    path.write_bytes(os.urandom(4096))
    return path


def _setup_escape(import_dir: Path) -> Path:
    outside = make_tar(import_dir.parent / "outside.tar")
    os.symlink(outside, import_dir / "escape.tar")  # made after the web process checked the path
    return import_dir / "escape.tar"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (_setup_missing, "must be shared storage"),
        (_setup_not_tar, "is not a tar archive"),
        (_setup_escape, "outside the import directory"),
    ],
)
def test_file_checks_on_the_node(
    node: Any,
    import_dir: Path,
    personas: dict,
    monkeypatch: pytest.MonkeyPatch,
    setup: Callable[[Path], Path],
    reason: str,
) -> None:
    fake = FakeDocker(monkeypatch, ["x:1"])
    imp = _import(node, setup(import_dir), personas)
    image_loader.run_import(imp.pk)
    assert _row(imp).state == ImportState.FAILED and reason in _row(imp).error
    assert fake.received == 0


def test_unreachable_docker(node: Any, tarball: Path, personas: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeDocker(monkeypatch, [], docker_driver.DockerUnavailable("socket refused"))
    imp = _import(node, tarball, personas)
    image_loader.run_import(imp.pk)
    assert "Docker engine on node n1 is unreachable" in _row(imp).error


def test_reaper_fails_imports_whose_worker_died(node: Any, tarball: Path, personas: dict, settings: Any) -> None:
    stale, fresh = _import(node, tarball, personas), _import(node, tarball, personas)
    old = timezone.now() - timedelta(seconds=settings.APPLIANCE_IMAGE_IMPORT_STALE_SECONDS + 5)
    ImageImport.objects.filter(pk=stale.pk).update(state=ImportState.RUNNING, heartbeat_at=old)
    ImageImport.objects.filter(pk=fresh.pk).update(state=ImportState.RUNNING, heartbeat_at=timezone.now())
    assert image_loader.reap_stale() == 1
    assert _row(stale).state == ImportState.FAILED and "worker stopped" in _row(stale).error
    assert _row(fresh).state == ImportState.RUNNING
