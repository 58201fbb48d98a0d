"""Backup → wipe → restore on MariaDB with real data; damaged and foreign archives; scheduled retention."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from appliance.accounts.models import ApiKey, Department, User
from appliance.accounts.services import create_api_key
from appliance.audit.models import AuditRecord
from appliance.audit.services import verify_chain
from appliance.deployments import services as deployment_services
from appliance.deployments.models import Deployment
from appliance.deployments.tests.factories import assign_all, profile_id, simulated_node, with_images
from appliance.operations import manifest as mf
from appliance.operations.backup import create_backup, table_counts
from appliance.operations.dbtools import drop_all_tables
from appliance.operations.restore import RestoreError, restore_backup
from appliance.quotas import services as quota_services
from appliance.quotas.drain import store_records
from appliance.quotas.models import Quota, UsageRecord
from appliance.quotas.usage import RequestMeta, usage_record

pytestmark = pytest.mark.django_db(transaction=True)

MODELS = (Department, User, ApiKey, Deployment, Quota, UsageRecord, AuditRecord)


def _populate(personas: dict[str, User]) -> None:
    root, alice = personas["root"], personas["alice"]
    eng = alice.department
    assert eng is not None
    node = simulated_node("gpu-b1")
    assign_all(root, node, eng)
    with_images(node)
    with transaction.atomic():
        create_api_key(alice, name="ci-key")
        create_api_key(personas["bob"], name="bob-key")
        quota_services.create_quota(root, department_id=eng.pk, tokens_per_day=100_000)
        deployment_services.create_deployment(
            alice, name="qwen-b", profile_id=profile_id("basic-7b"), department_id=eng.pk, start=False
        )
    meta = RequestMeta(user_id=personas["bob"].pk, department_id=eng.pk, model="qwen-b")
    store_records(
        [usage_record(meta, f"r{i}", status="ok", prompt_tokens=10 + i, completion_tokens=i) for i in range(30)]
    )


def _counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in MODELS}


def test_backup_wipe_restore_round_trip(personas: dict[str, User], seeded_profiles: None, tmp_path: Path) -> None:
    _populate(personas)
    result = create_backup(tmp_path)
    before, tables_before = _counts(), table_counts()
    assert before["deployments.Deployment"] == 1 and before["quotas.UsageRecord"] == 30
    assert before["audit.AuditRecord"] >= 5 and verify_chain().ok

    drop_all_tables()
    assert connection.introspection.table_names() == []

    report = restore_backup(result.path)
    assert report.differences == {}
    # The restore appends one record of its own to the restored chain.
    assert _counts() == {**before, "audit.AuditRecord": before["audit.AuditRecord"] + 1}
    assert table_counts() == {**tables_before, "audit_auditrecord": tables_before["audit_auditrecord"] + 1}
    chain = verify_chain()
    assert chain.ok, chain.problem
    assert list(AuditRecord.objects.order_by("-seq").values_list("action", flat=True)[:2]) == [
        "backup.restore",
        "backup.create",
    ]
    assert User.objects.get(username="alice").check_password("correct-horse-battery-9")


def test_the_archive_holds_a_signed_manifest_config_without_secrets_and_the_audit_head(
    personas: dict[str, User], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSOLE_SECRET_KEY", "do-not-export-me")
    monkeypatch.setenv("DATABASE_URL", "mysql://console:hunter22@db.example:3306/console")
    monkeypatch.setenv("APPLIANCE_METRICS_TOKEN", "do-not-export-either")
    result = create_backup(tmp_path)
    with tarfile.open(result.path) as tar:
        names = sorted(tar.getnames())
        config = json.loads(tar.extractfile(mf.CONFIG).read())  # type: ignore[union-attr]
        head = json.loads(tar.extractfile(mf.AUDIT_HEAD).read())  # type: ignore[union-attr]
        dump = tar.extractfile(mf.DATABASE).read()  # type: ignore[union-attr]
    assert names == sorted(mf.MEMBERS)
    assert config["CONSOLE_SECRET_KEY"] == mf.NOT_EXPORTED and config["APPLIANCE_METRICS_TOKEN"] == mf.NOT_EXPORTED
    assert config["DATABASE_URL"] == "mysql://console:***@db.example:3306/console"
    assert b"hunter22" not in result.path.read_bytes() and b"do-not-export" not in dump
    last = AuditRecord.objects.order_by("-seq").first()
    assert last is not None and head["seq"] == last.seq and head["signature"] == last.signature
    manifest = result.manifest
    assert manifest["versions"]["console"] and manifest["versions"]["django"]
    assert manifest["database"]["dump_tool"].startswith("mysqldump")
    assert "0001_initial" in manifest["migrations"]["audit"]


def _rewrite(archive: Path, out: Path, member: str, change: Any) -> Path:
    with tarfile.open(archive) as tar, tarfile.open(out, "w:gz") as new:
        for info in tar.getmembers():
            data = tar.extractfile(info).read()  # type: ignore[union-attr]
            if info.name == member:
                data = change(data)
                info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    return out


def test_a_damaged_or_edited_archive_is_refused_before_the_database_is_touched(
    personas: dict[str, User], tmp_path: Path
) -> None:
    archive = create_backup(tmp_path / "a").path
    damaged = _rewrite(archive, tmp_path / "damaged.tar.gz", mf.DATABASE, lambda d: d + b"DROP TABLE x;\n")
    with pytest.raises(RestoreError, match="checksum"):
        restore_backup(damaged)

    def bump_counts(data: bytes) -> bytes:
        manifest = json.loads(data)
        manifest["counts"]["accounts_user"] = 0
        return mf.dumps(manifest)

    edited = _rewrite(archive, tmp_path / "edited.tar.gz", mf.MANIFEST, bump_counts)
    with pytest.raises(RestoreError, match="signature"):
        restore_backup(edited)
    assert User.objects.filter(username="alice").exists()


def test_an_archive_signed_with_another_key_is_refused(
    personas: dict[str, User], tmp_path: Path, settings: Any
) -> None:
    archive = create_backup(tmp_path).path
    settings.APPLIANCE_AUDIT_KEY = "another-appliance-key-0123456789abcdef"
    settings.APPLIANCE_AUDIT_RETIRED_KEYS = []
    with pytest.raises(RestoreError, match="key"):
        restore_backup(archive)


def test_a_backup_from_a_newer_version_is_refused(personas: dict[str, User], tmp_path: Path) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES ('audit', '9999_from_the_future', NOW())"
        )
    try:
        archive = create_backup(tmp_path).path
    finally:  # django_migrations is no model table: the test database's flush would keep the row
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM django_migrations WHERE name = '9999_from_the_future'")
    with pytest.raises(RestoreError, match="newer version"):
        restore_backup(archive)


def test_scheduled_backup_keeps_the_newest_archives(settings: Any, tmp_path: Path, db: Any) -> None:
    from appliance.operations.tasks import scheduled_backup

    settings.APPLIANCE_BACKUP_DIR = str(tmp_path)
    settings.APPLIANCE_BACKUP_KEEP = 2
    written = [scheduled_backup() for _ in range(3)]
    assert sorted(str(p) for p in tmp_path.glob("console-backup-*.tar.gz")) == written[1:]
    assert not list(tmp_path.glob(".*partial"))


def test_commands_round_trip(personas: dict[str, User], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("backup", "--dir", str(tmp_path), "--keep", "1")
    archive = next(tmp_path.glob("console-backup-*.tar.gz"))
    call_command("restore", str(archive), "--yes")
    out = capsys.readouterr().out
    assert "backup written" in out and "audit chain OK" in out
