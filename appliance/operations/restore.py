"""``manage.py restore``: check an archive (signature, checksums, versions), load it, migrate, verify.

The order matters: everything that can be checked without touching the database is checked first,
so a damaged or foreign archive leaves the current database as it was.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader

from appliance.audit import services as audit
from appliance.audit.models import AuditRecord
from appliance.operations import dbtools
from appliance.operations import manifest as mf
from appliance.operations.backup import table_counts


class RestoreError(Exception):
    """The archive cannot be restored here; the database was not touched unless the message says so."""


@dataclass
class RestoreReport:
    manifest: dict[str, Any]
    counts: dict[str, int]
    chain_count: int
    differences: dict[str, tuple[int, int]] = field(default_factory=dict)


def _extract(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if set(members) != set(mf.MEMBERS) or not all(m.isfile() for m in members.values()):
                raise RestoreError(f"{archive.name} is not a console backup: it holds {sorted(members)}")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise RestoreError(f"{archive.name} cannot be read: {exc}") from exc


def check_archive(work: Path) -> dict[str, Any]:
    """Signature, checksums and compatibility of an extracted archive; returns its manifest."""
    manifest_bytes = (work / mf.MANIFEST).read_bytes()
    problem = mf.signature_problem(manifest_bytes, json.loads((work / mf.SIGNATURE).read_bytes()))
    if problem:
        raise RestoreError(problem)
    manifest: dict[str, Any] = json.loads(manifest_bytes)
    if manifest.get("format") != mf.FORMAT:
        raise RestoreError(f"archive format {manifest.get('format')} is not {mf.FORMAT}")
    for member, expected in manifest["files"].items():
        if mf.sha256_of(work / member) != expected["sha256"]:
            raise RestoreError(f"{member} does not match its checksum in the manifest: the archive is damaged")
    if manifest["database"]["vendor"] != dbtools.vendor():
        raise RestoreError(
            f"the archive is a {manifest['database']['vendor']} dump; this console uses {dbtools.vendor()}"
        )
    _check_migrations(manifest["migrations"])
    return manifest


def _check_migrations(applied: dict[str, list[str]]) -> None:
    """A backup taken by a newer version has migrations this code does not know: refuse it."""
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    unknown = [f"{app}.{name}" for app, names in applied.items() for name in names if (app, name) not in known]
    if unknown:
        raise RestoreError(f"the archive comes from a newer version (unknown migrations: {', '.join(unknown[:5])})")


def _check_audit(manifest: dict[str, Any]) -> int:
    report = audit.verify_chain()
    if not report.ok:
        raise RestoreError(f"restored, but the audit chain does not verify: {report.problem}")
    head = manifest["audit_head"]
    if head["seq"]:
        record = AuditRecord.objects.filter(seq=head["seq"]).only("hash").first()
        if record is None or record.hash != head["hash"]:
            raise RestoreError(f"restored, but audit record #{head['seq']} is not the one the manifest names")
    return report.count


def restore_backup(archive: Path) -> RestoreReport:
    with tempfile.TemporaryDirectory(prefix="console-restore-") as tmp:
        work = Path(tmp)
        _extract(archive, work)
        manifest = check_archive(work)
        dbtools.drop_all_tables()
        dbtools.load(work / mf.DATABASE)
    counts = table_counts()
    # A backup of an older version is brought to this version's schema.
    call_command("migrate", interactive=False, verbosity=0)
    chain_count = _check_audit(manifest)
    differences = {
        table: (expected, counts.get(table, 0))
        for table, expected in manifest["counts"].items()
        if counts.get(table, 0) != expected
    }
    with transaction.atomic():
        after = {"created_at": manifest["created_at"], "audit_head": manifest["audit_head"]["seq"]}
        audit.record("backup.restore", actor=None, target_type="backup", target_label=archive.name, after=after)
    connection.close()
    return RestoreReport(manifest, counts, chain_count, differences)
