"""Writing and verifying the audit log. Call :func:`record` inside the transaction of the change."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from appliance.audit import anchor
from appliance.audit.archive import ArchiveError, archived_records
from appliance.audit.models import GENESIS_HASH, AuditChainHead, AuditRecord
from appliance.core.context import current

if TYPE_CHECKING:
    from appliance.accounts.models import User

CENSORED = "********"
# Keys whose values never reach the audit log, whatever model they come from.
SECRET_KEYS = frozenset({"password", "secret", "key", "api_key", "token", "hashed_key", "plaintext"})


def censor(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: CENSORED if k.lower() in SECRET_KEYS else censor(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [censor(v) for v in data]
    if isinstance(data, datetime):
        return data.isoformat()
    if isinstance(data, Decimal):
        return str(data)
    return data


def canonical_payload(rec: AuditRecord) -> bytes:
    """The bytes hashed for one record: every stored field but the hash itself, sorted keys."""
    created = rec.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload = {
        "seq": rec.seq,
        "created_at": created,
        "actor_id": rec.actor_id,
        "actor_name": rec.actor_name,
        "department_id": rec.department_id,
        "action": rec.action,
        "target_type": rec.target_type,
        "target_id": rec.target_id,
        "target_label": rec.target_label,
        "before": rec.before,
        "after": rec.after,
        "request_id": rec.request_id,
        "source_ip": rec.source_ip,
        "user_agent": rec.user_agent,
        "via": rec.via,
        "prev_hash": rec.prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(rec: AuditRecord) -> str:
    return hashlib.sha256(rec.prev_hash.encode() + canonical_payload(rec)).hexdigest()


def _lock_head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(id=1).first()
    if head is None:
        # Only after a table flush (tests); the migration creates the row in real databases.
        AuditChainHead.objects.get_or_create(id=1)
        head = AuditChainHead.objects.select_for_update().get(id=1)
    return head


def record(
    action: str,
    *,
    actor: User | None,
    target: Model | None = None,
    target_type: str = "",
    target_label: str = "",
    department_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one record to the chain. Must run inside the caller's transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit.record() must run inside the transaction of the change it records")
    ctx = current()
    head = _lock_head()
    rec = AuditRecord(
        seq=head.seq + 1,
        created_at=timezone.now(),
        actor=actor if actor is not None and actor.pk else None,
        actor_name=_actor_name(actor, ctx.via),
        department_id=department_id if department_id is not None else _department_of(target, actor),
        action=action,
        target_type=target_type or (target._meta.label_lower if target is not None else ""),
        target_id=str(target.pk) if target is not None and target.pk is not None else "",
        target_label=(target_label or (str(target) if target is not None else ""))[:255],
        before=censor(before) if before is not None else None,
        after=censor(after) if after is not None else None,
        request_id=ctx.request_id,
        source_ip=ctx.source_ip,
        user_agent=ctx.user_agent[:255],
        via=ctx.via,
        prev_hash=head.hash,
    )
    rec.hash = compute_hash(rec)
    rec.key_id, rec.signature = anchor.sign(rec.seq, rec.hash)
    rec.save()
    AuditChainHead.objects.filter(id=1).update(seq=rec.seq, hash=rec.hash)
    return rec


def _actor_name(actor: User | None, via: str) -> str:
    if actor is None or not actor.pk:
        return f"system:{via}"
    return actor.get_username()


def _department_of(target: Model | None, actor: User | None) -> int | None:
    for obj in (target, actor):
        if obj is None:
            continue
        if obj._meta.label_lower == "accounts.department":
            return obj.pk
        dept_id = getattr(obj, "department_id", None)
        if dept_id is not None:
            return dept_id
    return None


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    count: int
    first_bad_seq: int | None = None
    problem: str = ""


def _records_in_order(batch: int = 2000, after: int = 0) -> Iterator[AuditRecord]:
    last = after
    while True:
        chunk = list(AuditRecord.objects.filter(seq__gt=last).order_by("seq")[:batch])
        if not chunk:
            return
        yield from chunk
        last = chunk[-1].seq


def verify_chain(anchor_lines: Iterable[str] = (), archived: Iterable[AuditRecord] | None = None) -> ChainReport:
    """Walk the chain from the genesis hash, checking each record's hash and signature, and that it
    reaches every exported anchor; report the first problem.

    The walk starts in the archived segments (appliance/audit/archive.py; those in
    APPLIANCE_AUDIT_ARCHIVE_DIR unless ``archived`` is given) and goes on in the database, as one chain."""
    anchors: dict[int, list[anchor.AnchorLine]] = {}
    for line in anchor.read_anchors(anchor_lines):
        if line.anchor is None or line.problem:
            return ChainReport(False, 0, None, f"anchor line {line.number}: {line.problem}")
        anchors.setdefault(line.anchor.seq, []).append(line)
    expected_prev, expected_seq, count = GENESIS_HASH, 1, 0
    try:
        for rec in _archived_then_online(archived):
            problem = _record_problem(rec, expected_seq, expected_prev) or _anchor_problem(
                rec, anchors.pop(rec.seq, [])
            )
            if problem:
                return ChainReport(False, count, min(rec.seq, expected_seq), problem)
            expected_prev, expected_seq, count = rec.hash, expected_seq + 1, count + 1
    except ArchiveError as exc:
        return ChainReport(False, count, None, str(exc))
    if anchors:
        beyond = anchors[max(anchors)][0]
        assert beyond.anchor is not None
        problem = (
            f"the chain ends at record #{count} but anchor line {beyond.number} (exported {beyond.anchor.exported_at})"
            f" saw record #{beyond.anchor.seq}: records were removed"
        )
        return ChainReport(False, count, count + 1, problem)
    head = AuditChainHead.objects.filter(id=1).first()
    if head is not None and head.seq != count:
        return ChainReport(False, count, count + 1, f"chain head says #{head.seq} but the last record is #{count}")
    return ChainReport(True, count)


def _archived_then_online(archived: Iterable[AuditRecord] | None) -> Iterator[AuditRecord]:
    """The archived records, then the database's after the last archived one (a row still online
    after its segment was written, by an archiver that died before deleting, is the same record)."""
    last = 0
    for rec in archived_records() if archived is None else archived:
        last = rec.seq
        yield rec
    yield from _records_in_order(after=last)


def _record_problem(rec: AuditRecord, expected_seq: int, expected_prev: str) -> str:
    if rec.seq != expected_seq:
        return f"record #{expected_seq} is missing (next is #{rec.seq})"
    if rec.prev_hash != expected_prev:
        return f"record #{rec.seq} does not follow record #{rec.seq - 1}"
    if compute_hash(rec) != rec.hash:
        return f"record #{rec.seq} was altered (hash mismatch)"
    problem = anchor.check(rec.seq, rec.hash, rec.key_id, rec.signature)
    return f"record #{rec.seq}: {problem}" if problem else ""


def _anchor_problem(rec: AuditRecord, lines: list[anchor.AnchorLine]) -> str:
    for line in lines:
        if line.anchor is not None and line.anchor.hash != rec.hash:
            return f"record #{rec.seq} differs from anchor line {line.number} (exported {line.anchor.exported_at})"
    return ""


def export_anchor() -> anchor.Anchor | None:
    """Publish the newest record's signed hash (beat task ``audit.export_anchor``); None while the log is empty.

    The stored signature is exported, never a fresh one: signing whatever the database holds now
    would vouch for a rewrite. A head whose signature does not check is reported instead.
    """
    last = AuditRecord.objects.order_by("-seq").first()
    if last is None:
        return None
    problem = anchor.check(last.seq, last.hash, last.key_id, last.signature)
    if problem:
        anchor.log.error("audit head #%d not exported: %s", last.seq, problem)
        return None
    exported = anchor.anchor_for(last.seq, last.hash, last.key_id, last.signature)
    anchor.publish(exported)
    return exported
