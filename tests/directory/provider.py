"""Runs django-oidc-provider (tests/directory/oidc_provider) as a separate process on a free port."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.directory.process import serving
from tests.directory.slapd import free_port

REPO = Path(__file__).resolve().parents[2]
SETTINGS = "tests.directory.oidc_provider.settings"


@dataclass
class Provider:
    url: str

    def endpoint(self, name: str) -> str:
        return f"{self.url}/openid/{name}"


def _env(root: Path, url: str, seed: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "APPLIANCE_", "CONSOLE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE=SETTINGS,
        PYTHONPATH=str(REPO),
        OIDC_PROVIDER_DB=str(root / "provider.sqlite3"),
        OIDC_PROVIDER_URL=url,
        OIDC_PROVIDER_SEED=json.dumps(seed),
    )
    return env


@contextmanager
def running_provider(root: Path, seed: dict[str, Any]) -> Iterator[Provider]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(root, url, seed)
    subprocess.run(
        [sys.executable, "-m", "tests.directory.oidc_provider.bootstrap"],
        env=env,
        cwd=REPO,
        check=True,
        timeout=120,
        capture_output=True,
    )
    cmd = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload", "--nothreading"]
    ready = functools.partial(_answers, f"{url}/openid/.well-known/openid-configuration")
    with serving(cmd, root / "provider.log", ready, "the OIDC provider", 30, env=env, cwd=REPO):
        yield Provider(url=url)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
