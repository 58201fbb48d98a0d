"""Audit records older than the online retention, moved to signed segment files.

A segment (``audit-<first seq>-<last seq>.jsonl.gz``) holds a header line and then every stored
field of each record, in order. Each record keeps its chain hash and its signature, so
``verify_chain`` walks the archived records and then the database's as one chain from the genesis
hash: an edited, removed or reordered archived record breaks it exactly as it would in the
database, and the first record left online must follow the last archived one. The header's HMAC
(audit key) over the segment's range, last hash and content digest also catches a whole segment
swapped for another.

Records are deleted from the database only after their segment was written, synced, renamed into
place and read back; a run that dies in between leaves the records online and a segment that the
next run rewrites identically.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from appliance.audit import anchor
from appliance.audit.models import AuditChainHead, AuditRecord

SEGMENT_RECORDS = 50_000
FIELDS = (
    "seq", "created_at", "actor_id", "actor_name", "department_id", "action", "target_type", "target_id",
    "target_label", "before", "after", "request_id", "source_ip", "user_agent", "via", "prev_hash", "hash",
    "key_id", "signature",
)  # fmt: skip


class ArchiveError(Exception):
    pass


@dataclass(frozen=True)
class ArchiveResult:
    segments: list[Path]
    archived: int


def archive_dir() -> Path:
    return Path(settings.APPLIANCE_AUDIT_ARCHIVE_DIR)


def _row(rec: AuditRecord) -> dict[str, Any]:
    row = {name: getattr(rec, name) for name in FIELDS}
    row["created_at"] = rec.created_at.isoformat()
    return row


def _record(row: dict[str, Any]) -> AuditRecord:
    data = dict(row)
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    return AuditRecord(**data)


def _header_mac(key: str, header: dict[str, Any]) -> str:
    payload = json.dumps(header, sort_keys=True).encode()
    return hmac.new(key.encode(), b"audit-segment:v1:" + payload, hashlib.sha256).hexdigest()


def _encode(records: list[AuditRecord]) -> bytes:
    body = b"".join(json.dumps(_row(r), sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in records)
    header = {
        "first_seq": records[0].seq,
        "last_seq": records[-1].seq,
        "last_hash": records[-1].hash,
        "records_sha256": hashlib.sha256(body).hexdigest(),
    }
    key = settings.APPLIANCE_AUDIT_KEY
    signed = {"segment": header, "key_id": anchor.key_id(key), "signature": _header_mac(key, header)}
    return json.dumps(signed, sort_keys=True).encode() + b"\n" + body


def segment_name(first: int, last: int) -> str:
    return f"audit-{first:012d}-{last:012d}.jsonl.gz"


def _write(directory: Path, records: list[AuditRecord]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / segment_name(records[0].seq, records[-1].seq)
    partial = directory / f".{final.name}.partial"
    with partial.open("wb") as raw:
        # mtime=0: the same records give the same bytes, so a rerun after a crash rewrites an identical file.
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(_encode(records))
        raw.flush()
        os.fsync(raw.fileno())
    partial.replace(final)
    return final


def _keys() -> dict[str, str]:
    keys = [settings.APPLIANCE_AUDIT_KEY, *settings.APPLIANCE_AUDIT_RETIRED_KEYS]
    return {anchor.key_id(k): k for k in keys}


def read_segment(path: Path) -> list[AuditRecord]:
    """The records of one segment, after checking its header's signature and digest."""
    try:
        lines = gzip.decompress(path.read_bytes()).split(b"\n")
        signed = json.loads(lines[0])
    except (OSError, ValueError, IndexError) as exc:
        raise ArchiveError(f"{path.name}: unreadable ({exc})") from None
    body = b"\n".join(lines[1:])
    header, key = signed.get("segment", {}), _keys().get(str(signed.get("key_id")))
    if key is None or not hmac.compare_digest(_header_mac(key, header), str(signed.get("signature"))):
        raise ArchiveError(f"{path.name}: the segment's signature does not verify under the audit key")
    if hashlib.sha256(body).hexdigest() != header.get("records_sha256"):
        raise ArchiveError(f"{path.name}: its records were changed after it was written")
    records = [_record(json.loads(line)) for line in body.split(b"\n") if line]
    if not records or (records[0].seq, records[-1].seq) != (header["first_seq"], header["last_seq"]):
        raise ArchiveError(f"{path.name}: its records do not cover the range its header names")
    return records


def segments(directory: Path | None = None) -> list[Path]:
    found = (directory or archive_dir()).glob("audit-*.jsonl.gz")
    return sorted(found)  # zero-padded sequence numbers: name order is chain order


def archived_records(directory: Path | None = None) -> Iterator[AuditRecord]:
    for path in segments(directory):
        yield from read_segment(path)


def archive_old_records(days: int | None = None, directory: Path | None = None) -> ArchiveResult:
    """Move records older than ``days`` (default APPLIANCE_AUDIT_RETENTION_DAYS) to segment files."""
    cutoff = timezone.now() - timedelta(days=days if days is not None else settings.APPLIANCE_AUDIT_RETENTION_DAYS)
    # Only a prefix of the chain leaves: everything up to the newest record older than the cutoff.
    last = AuditRecord.objects.filter(created_at__lt=cutoff).order_by("-seq").values_list("seq", flat=True).first()
    written: list[Path] = []
    archived = done = 0
    while last is not None:
        batch = list(AuditRecord.objects.filter(seq__gt=done, seq__lte=last).order_by("seq")[:SEGMENT_RECORDS])
        if not batch:
            break
        done = batch[-1].seq
        path = _write(directory or archive_dir(), batch)
        if [r.hash for r in read_segment(path)] != [r.hash for r in batch]:
            raise ArchiveError(f"{path.name} did not read back as written; nothing was deleted")
        _delete_through(batch[-1].seq)
        written.append(path)
        archived += len(batch)
    return ArchiveResult(written, archived)


def _delete_through(seq: int) -> None:
    """The one sanctioned removal of audit rows: those already in a verified segment file."""
    with transaction.atomic():
        AuditChainHead.objects.select_for_update().filter(id=1).first()  # one archiver at a time
        table = connection.ops.quote_name(AuditRecord._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE seq <= %s", [seq])  # noqa: S608 - the model's own table
