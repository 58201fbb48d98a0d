"""``manage.py backup``: one archive with a consistent database dump, the audit head, the configuration
without secrets and a signed manifest (versions, migrations, row counts, checksums)."""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from appliance.audit import services as audit
from appliance.audit.models import AuditRecord
from appliance.operations import dbtools
from appliance.operations import manifest as mf

ARCHIVE_PREFIX = "console-backup-"
ARCHIVE_SUFFIX = ".tar.gz"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict[str, Any]


def audit_head() -> dict[str, Any]:
    """The newest audit record's number, hash and signature (what the restored chain must reach)."""
    last = AuditRecord.objects.order_by("-seq").only("seq", "hash", "key_id", "signature", "created_at").first()
    if last is None:
        return {"seq": 0}
    return {
        "seq": last.seq,
        "hash": last.hash,
        "key_id": last.key_id,
        "signature": last.signature,
        "created_at": last.created_at.isoformat(),
    }


def table_counts() -> dict[str, int]:
    counts = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names()):
            # Table names come from the database's own catalogue, quoted.
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
            counts[table] = int(cursor.fetchone()[0])
    return counts


def _snapshot() -> tuple[dict[str, Any], dict[str, int]]:
    """Audit head and row counts read in one transaction just before the dump's own snapshot.

    mysqldump's snapshot is its own, a moment later: on a live console the dump may hold a few more
    usage or audit rows than counted here, never fewer, and its chain passes through this head.
    """
    with transaction.atomic():
        if dbtools.vendor() == "mysql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return audit_head(), table_counts()


def _record_backup(name: str) -> None:
    with transaction.atomic():
        audit.record("backup.create", actor=None, target_type="backup", target_label=name)


def archive_name(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return f"{ARCHIVE_PREFIX}{moment.strftime('%Y%m%dT%H%M%S%fZ')}{ARCHIVE_SUFFIX}"


def create_backup(directory: Path) -> BackupResult:
    """Write one archive into ``directory``; returns its path and manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    name = archive_name()
    # Recorded first, so the archive holds the record of its own making and the chain head it shows.
    _record_backup(name)
    with tempfile.TemporaryDirectory(prefix="console-backup-") as tmp:
        work = Path(tmp)
        head, counts = _snapshot()
        dump_tool = dbtools.dump(work / mf.DATABASE)
        (work / mf.AUDIT_HEAD).write_bytes(mf.dumps(head))
        (work / mf.CONFIG).write_bytes(mf.dumps(mf.configuration()))
        manifest = _manifest(work, head, counts, dump_tool)
        manifest_bytes = mf.dumps(manifest)
        (work / mf.MANIFEST).write_bytes(manifest_bytes)
        (work / mf.SIGNATURE).write_bytes(mf.dumps(mf.sign(manifest_bytes)))
        partial = directory / f".{name}.partial"
        with tarfile.open(partial, "w:gz") as tar:
            for member in mf.MEMBERS:
                tar.add(work / member, arcname=member)
        # Renamed only when complete: retention and restore never see half an archive.
        final = directory / name
        partial.rename(final)
    return BackupResult(final, manifest)


def _manifest(work: Path, head: dict[str, Any], counts: dict[str, int], dump_tool: str) -> dict[str, Any]:
    files = {
        member: {"sha256": mf.sha256_of(work / member), "bytes": (work / member).stat().st_size}
        for member in (mf.DATABASE, mf.AUDIT_HEAD, mf.CONFIG)
    }
    return {
        "format": mf.FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "console_id": settings.CONSOLE_ID,
        "versions": mf.versions(),
        "database": {"vendor": dbtools.vendor(), "server": dbtools.server_version(), "dump_tool": dump_tool},
        "migrations": mf.applied_migrations(),
        "counts": counts,
        "audit_head": head,
        "files": files,
    }


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` archives (names sort by time); returns what was deleted."""
    archives = sorted(directory.glob(f"{ARCHIVE_PREFIX}*{ARCHIVE_SUFFIX}"))
    doomed = archives[:-keep] if keep > 0 else archives
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
