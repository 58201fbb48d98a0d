"""Audit anchoring (issue 12, item 9): a database-only rewrite of the chain is detected.

Records are signed with a key kept outside the database; the signed head is exported
periodically; ``verify_audit_chain`` checks both.
"""

from __future__ import annotations

import json
import logging
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings

from appliance.audit import services as audit
from appliance.audit.models import AuditRecord

pytestmark = pytest.mark.django_db


def _write(n: int, label: str = "t") -> None:
    for i in range(n):
        with transaction.atomic():
            audit.record("test.event", actor=None, target_type="test", target_label=f"{label}{i}", after={"i": i})


def _verify(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit_chain", *args, stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), err.getvalue()
    return 0, out.getvalue()


def _raw(sql: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _rewrite_from(seq: int, label: str) -> None:
    """What an attacker with write access to the database alone can do: alter a record and re-link the
    rest of the chain with freshly computed hashes, so every hash and the head agree again."""
    _raw("UPDATE audit_auditrecord SET target_label = %s WHERE seq = %s", [label, seq])
    prev = AuditRecord.objects.get(seq=seq - 1).hash if seq > 1 else "0" * 64
    for rec in AuditRecord.objects.filter(seq__gte=seq).order_by("seq"):
        rec.prev_hash = prev
        new_hash = audit.compute_hash(rec)
        _raw("UPDATE audit_auditrecord SET prev_hash = %s, hash = %s WHERE seq = %s", [prev, new_hash, rec.seq])
        prev = new_hash
    _raw("UPDATE audit_auditchainhead SET hash = %s WHERE id = 1", [prev])


def test_a_rewrite_with_recomputed_hashes_is_detected() -> None:
    _write(5)
    _rewrite_from(3, "forged")
    code, text = _verify()
    assert code == 1, text
    assert "#3" in text and "signature" in text


def test_intact_chain_verifies_with_signatures() -> None:
    _write(4)
    code, text = _verify()
    assert code == 0 and "4 records" in text
    assert all(rec.signature and rec.key_id for rec in AuditRecord.objects.all())


def test_truncation_is_detected_by_an_exported_anchor(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.log"
    _write(5)
    with override_settings(APPLIANCE_AUDIT_ANCHOR_FILE=str(anchors)):
        audit.export_anchor()
        line = json.loads(anchors.read_text().splitlines()[-1])
        assert line["seq"] == 5 and line["hash"] == AuditRecord.objects.get(seq=5).hash
        # Dropping the newest records leaves a chain whose every signature is valid...
        _raw("DELETE FROM audit_auditrecord WHERE seq > %s", [3])
        _raw("UPDATE audit_auditchainhead SET seq = 3, hash = %s WHERE id = 1", [AuditRecord.objects.get(seq=3).hash])
        # ...but not one that reaches the exported anchor.
        code, text = _verify()
    assert code == 1 and "#5" in text and "anchor" in text


def test_a_forged_anchor_line_is_reported(tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.log"
    _write(2)
    forged = {"seq": 2, "hash": AuditRecord.objects.get(seq=2).hash, "key_id": "x", "signature": "0" * 64}
    anchors.write_text(json.dumps(forged) + "\n")
    code, text = _verify("--anchors", str(anchors))
    assert code == 1 and "anchor" in text and "line 1" in text


def test_the_export_writes_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    _write(3)
    with caplog.at_level(logging.INFO, logger="appliance.audit.anchor"):
        audit.export_anchor()
    [message] = [r.getMessage() for r in caplog.records if r.name == "appliance.audit.anchor"]
    assert '"seq": 3' in message and "signature" in message


def test_rotation_keeps_old_records_verifiable_while_the_old_key_is_retired() -> None:
    with override_settings(APPLIANCE_AUDIT_KEY="first-key-0123456789abcdef", APPLIANCE_AUDIT_RETIRED_KEYS=[]):
        _write(2, "a")
    with override_settings(
        APPLIANCE_AUDIT_KEY="second-key-0123456789abcdef", APPLIANCE_AUDIT_RETIRED_KEYS=["first-key-0123456789abcdef"]
    ):
        _write(2, "b")
        assert _verify()[0] == 0
        assert len(set(AuditRecord.objects.values_list("key_id", flat=True))) == 2
    with override_settings(APPLIANCE_AUDIT_KEY="second-key-0123456789abcdef", APPLIANCE_AUDIT_RETIRED_KEYS=[]):
        code, text = _verify()
    assert code == 1 and "#1" in text and "key" in text
