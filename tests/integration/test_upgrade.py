"""Upgrade from the previous release (0.1.0) to this tree keeps the data (issue 14, item 5).

0.1.0 is commit 4b65a66 (tagged ``v0.1.0``); it is found by its hash, so a fresh clone without tags
works too. Its tree is exported with ``git archive`` and run in a separate process with the shared
venv (its own tree first on ``sys.path``): it migrates an empty MariaDB database and creates data
through its own REST API and usage drain. Then this tree migrates the same database, and a process
of this tree checks that users, keys (the old secret still authenticates), quotas, usage history and
the audit chain (every old record now signed) survived.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import MySQLdb
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RELEASE_0_1_0 = "4b65a66ae3a704eb0677d3b97035e88a866b7d1e"
ADMIN_PASSWORD = "upgrade-admin-pass-19"
BOB_PASSWORD = "upgrade-bob-pass-2026"

CHECK_AFTER = """
import json, django
django.setup()
from rest_framework.test import APIClient
from appliance.accounts.models import ApiKey, Department, User
from appliance.audit.models import AuditRecord
from appliance.audit.services import verify_chain
from appliance.quotas.models import Quota, UsageRecord
from django.db.models import F, Sum
report = verify_chain()
client = APIClient()
client.credentials(HTTP_AUTHORIZATION="Bearer " + {key!r})
tokens = UsageRecord.objects.aggregate(t=Sum(F("prompt_tokens") + F("completion_tokens")))["t"]
print(json.dumps({{
    "counts": {{"departments": Department.objects.count(), "users": User.objects.count(),
               "api_keys": ApiKey.objects.count(), "quotas": Quota.objects.count(),
               "usage": UsageRecord.objects.count(), "usage_tokens": int(tokens or 0),
               "audit": AuditRecord.objects.count()}},
    "chain_ok": report.ok, "chain_problem": report.problem, "chain_count": report.count,
    "unsigned": AuditRecord.objects.filter(signature="").count(),
    "key_status": client.get("/api/v1/api-keys/").status_code,
    "bob_password": User.objects.get(username="bob").check_password({bob!r}),
    "quota": Quota.objects.values("tokens_per_day", "requests_per_minute").get(),
}}))
"""


@pytest.fixture
def database() -> Iterator[str]:
    name = f"console_upgrade_{uuid.uuid4().hex[:8]}"
    server = MySQLdb.connect(host="127.0.0.1", user="root", port=3306)
    try:
        server.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        server.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
        server.close()


def _old_tree(into: Path) -> Path:
    archive = into / "release.tar"
    result = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), RELEASE_0_1_0], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"0.1.0 ({RELEASE_0_1_0[:7]}) is not in this clone's history: {result.stderr}")
    tree = into / "release-0.1.0"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _env(database_url: str, tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    return {
        **env,
        "PYTHONPATH": str(tree),  # this tree's packages before the venv's editable install
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "DATABASE_URL": database_url,
        "CONSOLE_ENV": "test",
        "CONSOLE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "BOB_PASSWORD": BOB_PASSWORD,
    }


def test_upgrade_from_0_1_0_keeps_users_keys_quotas_usage_and_the_audit_chain(database: str, tmp_path: Path) -> None:
    old = _old_tree(tmp_path)
    old_env = _env(database, old)
    python = sys.executable
    _run([python, "manage.py", "migrate", "--noinput", "-v", "0"], old, old_env)
    _run([python, "manage.py", "create_platform_admin", "admin"], old, old_env)
    created = json.loads(_run([python, str(ROOT / "tests/integration/upgrade/create_data.py")], old, old_env))
    before = created["counts"]
    assert before["users"] == 2 and before["usage"] == 40 and before["audit"] >= 5

    new_env = _env(database, ROOT)
    _run([python, "manage.py", "migrate", "--noinput", "-v", "0"], ROOT, new_env)
    assert "audit chain OK" in _run([python, "manage.py", "verify_audit_chain"], ROOT, new_env)
    after = json.loads(_run([python, "-c", CHECK_AFTER.format(key=created["key"], bob=BOB_PASSWORD)], ROOT, new_env))

    assert after["counts"] == before
    assert after["chain_ok"] and after["chain_count"] == before["audit"], after["chain_problem"]
    assert after["unsigned"] == 0  # the upgrade signed every record written before signing existed
    assert after["key_status"] == 200 and after["bob_password"] is True
    assert after["quota"] == {"tokens_per_day": 100000, "requests_per_minute": 60}
