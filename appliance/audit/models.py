from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.db import models

from appliance.core.querysets import VIEW, RestrictedQuerySet

if TYPE_CHECKING:
    from appliance.accounts.models import User

GENESIS_HASH = "0" * 64


class AppendOnlyError(Exception):
    """Raised when code tries to change or remove an audit record."""


class AuditQuerySet(RestrictedQuerySet["AuditRecord"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit records are append-only")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("audit records are append-only")


class AuditRecord(models.Model):
    """One change, chained to the previous record by ``hash = sha256(prev_hash + canonical JSON)``
    and signed with the audit key (``signature``, not part of the hashed payload).

    ``seq`` is gap-free and assigned under a row lock on :class:`AuditChainHead`, so parallel
    writers line up instead of forking the chain, and a removed row shows as a gap.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    # No database constraint: the record keeps the id of a department that was later deleted, as history.
    department = models.ForeignKey(
        "accounts.Department",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, db_index=True, blank=True)
    target_id = models.CharField(max_length=64, blank=True, db_index=True)
    target_label = models.CharField(max_length=255, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, db_index=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    via = models.CharField(max_length=16, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # HMAC of (seq, hash) under a key kept outside the database (appliance/audit/anchor.py): a chain
    # rewritten in the database alone, hashes recomputed, fails verification here.
    key_id = models.CharField(max_length=16, blank=True, db_default="")
    signature = models.CharField(max_length=64, blank=True, db_default="")

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.target_type}:{self.target_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None or not self._state.adding:
            raise AppendOnlyError("audit records are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit records are append-only")

    @staticmethod
    def restrict_scope(qs: AuditQuerySet, user: User, action: str) -> AuditQuerySet:
        if action == VIEW and user.is_department_admin and user.department is not None:
            return qs.filter(department__path__startswith=user.department.path)
        return qs.none()


class AuditChainHead(models.Model):
    """A single row holding the chain's tip; locking it serialises audit writers."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"
