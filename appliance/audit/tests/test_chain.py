from __future__ import annotations

import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from appliance.accounts.models import Department
from appliance.audit import services as audit
from appliance.audit.models import AppendOnlyError, AuditChainHead, AuditRecord


def _write(n: int, label: str = "t") -> None:
    for i in range(n):
        with transaction.atomic():
            audit.record(
                "test.event",
                actor=None,
                target_type="test",
                target_label=f"{label}{i}",
                after={"i": i, "password": "hunter2", "nested": {"token": "x", "ok": "中文"}},
            )


def _run_verify() -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit_chain", stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), err.getvalue()
    return 0, out.getvalue()


@pytest.mark.django_db
def test_chain_verifies_and_secrets_are_censored() -> None:
    _write(5)
    code, text = _run_verify()
    assert code == 0 and "5 records" in text
    rec = AuditRecord.objects.order_by("seq").first()
    assert rec is not None
    assert rec.after == {"i": 0, "password": "********", "nested": {"token": "********", "ok": "中文"}}


@pytest.mark.django_db(transaction=True)
def test_record_outside_transaction_is_refused() -> None:
    with pytest.raises(RuntimeError):
        audit.record("x", actor=None)


@pytest.mark.django_db
def test_application_cannot_update_or_delete() -> None:
    _write(1)
    rec = AuditRecord.objects.get()
    rec.action = "changed"
    with pytest.raises(AppendOnlyError):
        rec.save()
    with pytest.raises(AppendOnlyError):
        rec.delete()
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.all().update(action="x")
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.all().delete()


def _raw(sql: str, params: list[Any]) -> None:
    # Tampering from outside the application, as a DBA with a SQL prompt could.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
def test_altered_record_is_named() -> None:
    _write(5)
    _raw("UPDATE audit_auditrecord SET target_label = %s WHERE seq = %s", ["forged", 3])
    code, text = _run_verify()
    assert code == 1 and "#3" in text and "altered" in text


@pytest.mark.django_db
def test_removed_record_is_named() -> None:
    _write(5)
    _raw("DELETE FROM audit_auditrecord WHERE seq = %s", [2])
    code, text = _run_verify()
    assert code == 1 and "#2" in text and "missing" in text


@pytest.mark.django_db
def test_removed_last_record_is_detected() -> None:
    _write(3)
    _raw("DELETE FROM audit_auditrecord WHERE seq = %s", [3])
    code, text = _run_verify()
    assert code == 1 and "#3" in text


@pytest.mark.django_db
def test_inserted_record_is_named() -> None:
    _write(3)
    # An inserted row must take a seq; shifting later rows up leaves their hashes linking to the wrong parent.
    _raw("UPDATE audit_auditrecord SET seq = seq + 100 WHERE seq >= %s", [2])
    _raw("UPDATE audit_auditrecord SET seq = seq - 99 WHERE seq >= %s", [100])
    rec = AuditRecord.objects.get(seq=1)
    _raw(
        "INSERT INTO audit_auditrecord (seq, created_at, actor_name, action, target_type, target_id, target_label,"
        " request_id, user_agent, via, prev_hash, hash) VALUES (%s, %s, 'x', 'forged', '', '', '', '', '', '', %s, %s)",
        [2, rec.created_at, rec.hash, "f" * 64],
    )
    code, text = _run_verify()
    assert code == 1 and "#2" in text


@pytest.mark.django_db(transaction=True)
def test_parallel_writers_do_not_fork_the_chain() -> None:
    errors: list[BaseException] = []

    def worker(label: str) -> None:
        try:
            _write(15, label)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    AuditChainHead.objects.get_or_create(id=1)  # the migration's row, removed by the transactional test's flush
    threads = [threading.Thread(target=worker, args=(f"w{n}-",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert AuditRecord.objects.count() == 120
    seqs = sorted(AuditRecord.objects.values_list("seq", flat=True))
    assert seqs == list(range(1, 121))
    code, text = _run_verify()
    assert code == 0 and "120 records" in text


@pytest.mark.django_db
def test_change_and_record_roll_back_together() -> None:
    with pytest.raises(ValueError), transaction.atomic():
        dept = Department.objects.create(code="tmp", name="临时")
        audit.record("department.create", actor=None, target=dept)
        raise ValueError("boom")
    assert not Department.objects.filter(code="tmp").exists()
    assert AuditRecord.objects.count() == 0
    assert _run_verify()[0] == 0
