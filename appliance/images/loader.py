"""The node's side of an image import: ``docker load`` of a tarball from the import directory.

The worker of the target node claims the row (``pending → running``, a conditional UPDATE: zero rows
means another delivery has it or it is over), streams the file into Docker in 1 MiB chunks while it
writes ``bytes_read``/``progress`` every 5 % or 10 s, then ends the row ``done`` with the names Docker
loaded or ``failed`` with a reason a person can act on, and refreshes the node's image list.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.audit import services as audit
from appliance.deployments import docker_driver
from appliance.images.catalog import record_node_images
from appliance.images.choices import ImportState
from appliance.images.models import ImageImport

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
PROGRESS_STEP = 5  # percent between two progress writes
HEARTBEAT_SECONDS = 10.0  # ... or this long, whichever comes first
# Until Docker says "Loaded image", reading the whole file is not the end: it still unpacks layers.
READ_PROGRESS_CAP = 99
_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")  # gzip, bzip2, xz, zstd


class ImportFailed(Exception):
    """A reason the import cannot go on, already worded for a person."""


def import_dir() -> Path:
    return Path(settings.APPLIANCE_IMAGE_IMPORT_DIR).resolve()


def resolve_import_path(raw: str) -> Path:
    """``raw`` (relative to the import directory, or absolute) as a real path inside that directory.

    Symlinks and ``..`` are resolved first, so neither can lead outside it.
    """
    base = import_dir()
    if not raw or "\x00" in raw:
        raise ImportFailed(f"give the path of a tarball inside the import directory {base}")
    real = Path(os.path.realpath(Path(raw) if os.path.isabs(raw) else base / raw))
    if base not in real.parents:
        raise ImportFailed(f"{raw} is outside the import directory {base}")
    return real


def looks_like_tarball(head: bytes) -> bool:
    """A tar header (``ustar`` at 257) or a compressed stream Docker's loader unpacks."""
    return head[257:262] == b"ustar" or any(head.startswith(magic) for magic in _MAGIC)


def not_a_tarball(name: str) -> str:
    return f"{name} is not a tar archive: give `docker save` output (plain or gzip/bzip2/xz/zstd-compressed)"


def claim(import_id: int) -> ImageImport | None:
    now = timezone.now()
    taken = ImageImport.objects.filter(pk=import_id, state=ImportState.PENDING).update(
        state=ImportState.RUNNING, started_at=now, heartbeat_at=now
    )
    return ImageImport.objects.select_related("node").get(pk=import_id) if taken else None


class Progress:
    """Counts the bytes handed to Docker and writes them to the row every few percent or seconds."""

    def __init__(self, import_id: int, total: int) -> None:
        self.import_id, self.total = import_id, total
        self.read = self.written_percent = self.writes = 0
        self.written_at = time.monotonic()

    @property
    def percent(self) -> int:
        return min(READ_PROGRESS_CAP, self.read * 100 // self.total) if self.total else 0

    def add(self, count: int) -> None:
        self.read += count
        due = time.monotonic() - self.written_at >= HEARTBEAT_SECONDS
        if due or self.percent >= self.written_percent + PROGRESS_STEP:
            self.flush()

    def flush(self) -> None:
        ImageImport.objects.filter(pk=self.import_id, state=ImportState.RUNNING).update(
            bytes_read=self.read, progress=self.percent, heartbeat_at=timezone.now()
        )
        self.written_percent, self.written_at, self.writes = self.percent, time.monotonic(), self.writes + 1


def chunks(path: Path, progress: Progress, sha256: str = "") -> Iterator[bytes]:
    """The file in chunks. With a checksum the last chunk is held until it matches, so a file that
    changed since it was uploaded never completes a load (Docker sees a cut stream and loads nothing)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        chunk = f.read(CHUNK_BYTES)
        while chunk:
            following = f.read(CHUNK_BYTES)
            digest.update(chunk)
            if not following and sha256 and digest.hexdigest() != sha256:
                raise ImportFailed(
                    f"checksum mismatch: {path.name} has SHA-256 {digest.hexdigest()}, not {sha256} as uploaded; "
                    "it changed or was damaged since, and nothing was loaded"
                )
            progress.add(len(chunk))
            yield chunk
            chunk = following


def open_checks(imp: ImageImport) -> Path:
    """The file to load, after the checks that give clearer reasons than Docker's errors would."""
    path = resolve_import_path(imp.path)
    if not path.is_file():
        raise ImportFailed(
            f"{path} is not on node {imp.node.name}. On a multi-node appliance the import directory "
            f"{import_dir()} must be shared storage mounted at the same path on every node."
        )
    with path.open("rb") as f:
        if not looks_like_tarball(f.read(512)):
            raise ImportFailed(not_a_tarball(path.name))
    return path


def explain(exc: BaseException, imp: ImageImport) -> str:
    """A reason a person can act on, for whatever stopped the import."""
    text = str(exc)
    if isinstance(exc, ImportFailed):
        return text
    if isinstance(exc, docker_driver.DockerUnavailable):
        return f"the Docker engine on node {imp.node.name} is unreachable: {text}"
    if isinstance(exc, PermissionError):
        return f"the worker on node {imp.node.name} may not read the file: {text}"
    lowered = text.lower()
    if "no space left on device" in lowered:
        return (
            f"the disk of node {imp.node.name} is full (Docker: {text}); "
            "free space, e.g. `docker image prune`, and import again"
        )
    if isinstance(exc, docker_driver.ImageLoadFailed):
        if any(s in lowered for s in ("unexpected eof", "invalid tar header", "archive/tar", "gzip", "checksum")):
            return f"the tarball is corrupt or truncated (Docker: {text}); copy it again and import again"
        if "manifest.json" in lowered or "repositories: no such file" in lowered:
            return f"the tar archive is not a `docker save` image: it has no manifest.json (Docker: {text})"
        return f"docker load failed: {text}"
    if isinstance(exc, requests.RequestException):
        return f"Docker broke off the load (a corrupt tarball, or the engine stopped): {text}"
    return f"{type(exc).__name__}: {text}"


def finish(import_id: int, *, tags: list[str] | None = None, error: str = "") -> bool:
    """End a running import ``done`` (with the loaded names) or ``failed``; audited. False if not running."""
    state = ImportState.FAILED if error else ImportState.DONE
    changes: dict[str, object] = {"state": state, "error": error[:4000], "finished_at": timezone.now()}
    if not error:
        changes.update(progress=100, loaded_tags=tags or [])
    with transaction.atomic():
        if not ImageImport.objects.filter(pk=import_id, state=ImportState.RUNNING).update(**changes):
            return False
        imp = ImageImport.objects.select_related("node").get(pk=import_id)
        audit.record(f"image.import.{state}", actor=None, target=imp, after=snapshot(imp))
    return True


def snapshot(imp: ImageImport) -> dict[str, object]:
    return {
        "node": imp.node.name,
        "path": imp.path,
        "size_bytes": imp.size_bytes,
        "sha256": imp.sha256,
        "state": imp.state,
        "loaded_tags": imp.loaded_tags,
        "error": imp.error[:500],
    }


def run_import(import_id: int) -> str:
    """The whole import on this node (called by the ``images.import_image`` task)."""
    pending = ImageImport.objects.select_related("node").filter(pk=import_id).first()
    if pending is None or pending.node.name != settings.NODE_NAME:
        return "not for this node"
    imp = claim(import_id)
    if imp is None:
        return "not pending (already claimed or over)"
    started = time.monotonic()
    try:
        path = open_checks(imp)
        total = path.stat().st_size
        ImageImport.objects.filter(pk=import_id).update(size_bytes=total)
        progress = Progress(import_id, total)
        stream = chunks(path, progress, imp.sha256)
        tags = docker_driver.load_image(stream, settings.APPLIANCE_IMAGE_IMPORT_STALE_SECONDS)
    except Exception as exc:  # every failure ends the row with its reason; the log keeps the trace
        log.warning("import %s on %s failed", import_id, imp.node.name, exc_info=True)
        finish(import_id, error=explain(exc, imp))
        outcome = "failed"
    else:
        ImageImport.objects.filter(pk=import_id).update(bytes_read=progress.read)
        finish(import_id, tags=tags)
        outcome = f"loaded {', '.join(tags) or 'nothing'} in {time.monotonic() - started:.1f} s"
    refresh_node_images(imp)
    return outcome


def refresh_node_images(imp: ImageImport) -> None:
    try:
        record_node_images(imp.node, docker_driver.local_images())
    except docker_driver.DockerUnavailable:
        log.warning("node %s: could not refresh the image list after import %s", imp.node.name, imp.pk)


def reap_stale() -> int:
    """Fail running imports whose worker stopped writing progress (it died); their redelivery finds
    them running and leaves them alone, so without this they would stay running."""
    cutoff = timezone.now() - timedelta(seconds=settings.APPLIANCE_IMAGE_IMPORT_STALE_SECONDS)
    stale = ImageImport.objects.filter(state=ImportState.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True)
    reason = (
        f"the worker stopped during the import (no progress for {settings.APPLIANCE_IMAGE_IMPORT_STALE_SECONDS} s); "
        "import again"
    )
    return sum(finish(import_id, error=reason) for import_id in list(stale))
