"""The Docker engine of *this* node, as its worker sees it (``DOCKER_HOST`` or the local socket).

Only the worker of a node talks to that node's engine; web processes never do. Every container is
created under a fixed name, so a re-delivered launch finds the container it made the first time
instead of making a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import docker
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from appliance.deployments.choices import CONTAINER_LABEL_CONSOLE, CONTAINER_LABEL_NODE

log = logging.getLogger(__name__)


class DockerUnavailable(Exception):
    """The node's Docker engine did not answer."""


class ImageLoadFailed(Exception):
    """The engine refused a tarball (``docker load``); the message is Docker's."""


@dataclass(frozen=True)
class Observed:
    """What the engine says of one of our containers."""

    name: str
    container_id: str
    status: str  # created, running, exited, dead, …
    exit_code: int | None
    labels: dict[str, str]


def client() -> docker.DockerClient:
    try:
        return docker.from_env(timeout=settings.APPLIANCE_DOCKER_TIMEOUT_SECONDS)
    except DockerException as exc:
        raise DockerUnavailable(str(exc)) from exc


def image_present(image: str) -> bool:
    try:
        client().images.get(image)
    except ImageNotFound:
        return False
    return True


def find(name: str) -> Container | None:
    try:
        return client().containers.get(name)
    except NotFound:
        return None


def ensure_created(kwargs: dict[str, Any]) -> tuple[Container, bool]:
    """Create the container unless one of that name exists; returns (container, created_now)."""
    existing = find(kwargs["name"])
    if existing is not None:
        return existing, False
    try:
        return client().containers.create(**kwargs), True
    except APIError as exc:
        if exc.status_code == 409:  # created by an earlier delivery of the same task, in a race
            found = find(kwargs["name"])
            if found is not None:
                return found, False
        raise


def start(container: Container) -> None:
    container.reload()
    if container.status != "running":
        container.start()


def stop_and_remove(name: str, grace_seconds: int) -> int | None:
    """SIGTERM, wait ``grace_seconds``, SIGKILL, remove. Returns the exit code, None if it was gone."""
    container = find(name)
    if container is None:
        return None
    try:
        container.stop(timeout=grace_seconds)
    except NotFound:
        return None
    container.reload()
    code = container.attrs.get("State", {}).get("ExitCode")
    try:
        container.remove(force=True)
    except NotFound:
        pass
    return int(code) if code is not None else None


def tail(name: str, lines: int = 50) -> str:
    container = find(name)
    if container is None:
        return ""
    raw = container.logs(tail=lines, stdout=True, stderr=True)
    return raw.decode("utf-8", errors="replace")[-16000:]


def ours(node_name: str) -> list[Observed]:
    """Every container of this console on this node, running or not."""
    labels = [f"{CONTAINER_LABEL_CONSOLE}={settings.CONSOLE_ID}", f"{CONTAINER_LABEL_NODE}={node_name}"]
    found = client().containers.list(all=True, filters={"label": labels}, ignore_removed=True)
    result = []
    for c in found:
        state = c.attrs.get("State", {})
        code = state.get("ExitCode") if c.status in ("exited", "dead") else None
        result.append(Observed(c.name, c.id, c.status, code, dict(c.labels)))
    return result


def local_images() -> list[dict[str, Any]]:
    rows = []
    for image in client().images.list():
        for tag in image.tags:
            rows.append(
                {
                    "tag": tag,
                    "image_id": image.id,
                    "size_bytes": int(image.attrs.get("Size", 0)),
                    "created": str(image.attrs.get("Created", ""))[:64],
                }
            )
    return rows


def load_image(chunks: Iterable[bytes], timeout: float) -> list[str]:
    """Stream a ``docker save`` tarball into the engine, like ``docker load``; the names it loaded.

    This is the call ``client.images.load`` wraps, used directly to read Docker's "Loaded image"
    lines: ``images.load`` returns Image objects with every tag the image has, not only those the
    tarball brought. ``timeout`` bounds each silence of the engine, which unpacks layers quietly.
    """
    try:
        api = docker.from_env(timeout=int(timeout)).api
    except DockerException as exc:
        raise DockerUnavailable(str(exc)) from exc
    loaded: list[str] = []
    for event in api.load_image(chunks, quiet=False):
        if "errorDetail" in event or "error" in event:
            raise ImageLoadFailed(str(event.get("errorDetail", {}).get("message") or event.get("error")))
        line = str(event.get("stream", "")).strip()
        for prefix in ("Loaded image: ", "Loaded image ID: "):
            if line.startswith(prefix):
                loaded.append(line.removeprefix(prefix))
    return loaded
