"""Audit retention: records older than the online window move to signed segments; the chain still verifies."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from appliance.audit import archive
from appliance.audit import services as audit
from appliance.audit.models import AuditRecord

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def archive_dir(settings: Any, tmp_path: Path) -> Path:
    settings.APPLIANCE_AUDIT_ARCHIVE_DIR = str(tmp_path)
    return tmp_path


def _write(n: int, label: str, monkeypatch: pytest.MonkeyPatch, days_ago: int = 0) -> None:
    moment = timezone.now() - timedelta(days=days_ago)
    monkeypatch.setattr(audit.timezone, "now", lambda: moment)
    for i in range(n):
        with transaction.atomic():
            audit.record("test.event", actor=None, target_type="test", target_label=f"{label}{i}", after={"i": i})
    monkeypatch.undo()


def _verify() -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit_chain", stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), err.getvalue()
    return 0, out.getvalue()


def test_old_records_move_to_a_segment_and_the_chain_verifies_across_it(
    archive_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(5, "old", monkeypatch, days_ago=200)
    _write(2, "recent", monkeypatch, days_ago=170)
    _write(3, "new", monkeypatch)
    result = archive.archive_old_records()  # the default window: 180 days
    assert result.archived == 5 and [p.name for p in result.segments] == [archive.segment_name(1, 5)]
    assert list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True)) == list(range(6, 11))
    report = audit.verify_chain()
    assert report.ok and report.count == 10, report.problem
    assert _verify() == (0, "audit chain OK: 10 records, 0 anchor lines\n")
    assert archive.archive_old_records().archived == 0  # nothing more is old enough


def test_anchors_exported_before_archiving_still_verify(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _write(4, "old", monkeypatch, days_ago=365)
    exported = audit.export_anchor()
    assert exported is not None
    _write(1, "new", monkeypatch)
    archive.archive_old_records()
    assert audit.verify_chain([exported.line()]).ok


def _rewrite_segment(path: Path, change: Any) -> None:
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    path.write_bytes(gzip.compress(b"\n".join(change(lines))))


def test_an_edited_archived_record_breaks_the_chain(archive_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(3, "old", monkeypatch, days_ago=200)
    _write(1, "new", monkeypatch)
    segment = archive.archive_old_records().segments[0]

    def edit(lines: list[bytes]) -> list[bytes]:
        row = json.loads(lines[2])
        row["target_label"] = "nothing happened"
        return [lines[0], lines[1], json.dumps(row, sort_keys=True).encode(), *lines[3:]]

    _rewrite_segment(segment, edit)
    code, message = _verify()
    assert code == 1 and "changed after it was written" in message


def test_a_removed_segment_or_its_records_break_the_chain(archive_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(3, "old", monkeypatch, days_ago=200)
    _write(1, "new", monkeypatch)
    segment = archive.archive_old_records().segments[0]
    kept = segment.read_bytes()
    segment.unlink()
    code, message = _verify()
    assert code == 1 and "record #1 is missing" in message
    segment.write_bytes(kept)
    assert _verify()[0] == 0


def test_a_segment_signed_with_another_key_is_refused(
    archive_dir: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    _write(2, "old", monkeypatch, days_ago=200)
    archive.archive_old_records()
    settings.APPLIANCE_AUDIT_KEY = "an-entirely-different-key-0123456789"
    settings.APPLIANCE_AUDIT_RETIRED_KEYS = []
    report = audit.verify_chain()
    assert not report.ok and "signature does not verify" in report.problem


def test_an_archiver_that_died_before_deleting_leaves_a_verifiable_chain(
    archive_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(3, "old", monkeypatch, days_ago=200)
    _write(1, "new", monkeypatch)
    monkeypatch.setattr(archive, "_delete_through", lambda seq: None)
    archive.archive_old_records()
    monkeypatch.undo()
    assert AuditRecord.objects.count() == 4 and audit.verify_chain().ok
    second = archive.archive_old_records()  # the rerun writes the same segment again, then deletes
    assert second.archived == 3 and len(archive.segments()) == 1
    assert AuditRecord.objects.count() == 1 and audit.verify_chain().count == 4
