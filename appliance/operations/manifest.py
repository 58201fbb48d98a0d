"""What a backup archive holds and how its parts are checked: checksums, versions, a signature.

The manifest is signed with the audit key (HMAC-SHA256, ``APPLIANCE_AUDIT_KEY``, kept outside the
database and outside the archive), so a restore can tell an archive this appliance wrote from one
edited afterwards; retired keys still verify older archives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import django
from django.conf import settings
from django.db.migrations.recorder import MigrationRecorder

from appliance.audit import anchor

FORMAT = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
DATABASE = "database.sql"
AUDIT_HEAD = "audit-head.json"
CONFIG = "config.json"
MEMBERS = (MANIFEST, SIGNATURE, DATABASE, AUDIT_HEAD, CONFIG)

# Environment variables that make up the console's configuration, and the names that mark a secret.
CONFIG_PREFIXES = ("CONSOLE_", "APPLIANCE_", "DATABASE_", "REDIS_", "CELERY_", "CHANNELS_", "CHAT_", "PROMETHEUS_")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$|_KEYS$|_FILE$")
NOT_EXPORTED = "<set; secret, not exported>"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _strip_password(value: str) -> str:
    parts = urlsplit(value)
    if not parts.password:
        return value
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def configuration(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The console's settings as set in the environment, secrets left out, passwords cut from URLs."""
    env = os.environ if environ is None else environ
    config = {}
    for name in sorted(env):
        if not name.startswith(CONFIG_PREFIXES):
            continue
        config[name] = NOT_EXPORTED if SECRET_NAME.search(name) else _strip_password(env[name])
    return config


def console_version() -> str:
    try:
        return metadata.version("appliance-console")
    except metadata.PackageNotFoundError:
        return "unknown"


def git_commit() -> str:
    git = shutil.which("git")
    if git is None:
        return ""
    command = [git, "-C", str(settings.BASE_DIR), "rev-parse", "HEAD"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - no shell, fixed program
    return result.stdout.strip() if result.returncode == 0 else ""


def applied_migrations() -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app, name in MigrationRecorder.Migration.objects.order_by("app", "name").values_list("app", "name"):
        applied.setdefault(app, []).append(name)
    return applied


def versions() -> dict[str, str]:
    return {
        "console": console_version(),
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "django": django.get_version(),
    }


def _keys() -> dict[str, str]:
    keys = [settings.APPLIANCE_AUDIT_KEY, *settings.APPLIANCE_AUDIT_RETIRED_KEYS]
    return {anchor.key_id(k): k for k in keys}


def sign(manifest_bytes: bytes) -> dict[str, str]:
    key = settings.APPLIANCE_AUDIT_KEY
    return {"key_id": anchor.key_id(key), "hmac_sha256": _mac(key, manifest_bytes)}


def _mac(key: str, data: bytes) -> str:
    return hmac.new(key.encode(), b"backup-manifest:v1:" + data, hashlib.sha256).hexdigest()


def signature_problem(manifest_bytes: bytes, signature: dict[str, Any]) -> str:
    key = _keys().get(str(signature.get("key_id", "")))
    if key is None:
        return "the manifest is signed with a key this console does not have (APPLIANCE_AUDIT_KEY or a retired key)"
    if not hmac.compare_digest(_mac(key, manifest_bytes), str(signature.get("hmac_sha256", ""))):
        return "the manifest's signature does not match: the archive was changed after it was written"
    return ""


def dumps(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False).encode()
