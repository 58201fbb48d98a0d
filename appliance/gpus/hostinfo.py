"""Facts about the machine a worker runs on, read once when the worker registers its node.

Every reader degrades to "unknown" (None or "") rather than failing: registration must succeed on a
bare VM, in a container without /proc details, or with the Docker engine down.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from appliance.gpus.choices import DOCKER_UNREACHABLE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostFacts:
    hostname: str
    cpu_model: str
    cpu_count: int | None
    ram_bytes: int | None
    disk_bytes: int | None
    os: str
    docker_version: str


def collect_host_facts(disk_path: str = "/") -> HostFacts:
    return HostFacts(
        hostname=socket.gethostname(),
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count(),
        ram_bytes=_ram_bytes(),
        disk_bytes=_disk_bytes(disk_path),
        os=_os_name(),
        docker_version=docker_version(),
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _disk_bytes(path: str) -> int | None:
    try:
        return shutil.disk_usage(path).total
    except OSError:
        return None


def _os_name() -> str:
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        pretty = platform.system()
    return f"{pretty} (kernel {platform.release()})".strip()


def docker_version() -> str:
    """The Docker engine's version, or ``unreachable`` when no engine answers within two seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return str(client.version().get("Version") or DOCKER_UNREACHABLE)
        finally:
            client.close()
    except Exception as exc:  # DockerException, requests' errors, a missing socket: all mean "no engine"
        log.info("Docker engine unreachable: %s", exc)
        return DOCKER_UNREACHABLE
