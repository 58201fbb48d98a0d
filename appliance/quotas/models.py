from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from appliance.core.querysets import VIEW, RestrictedQuerySet
from appliance.quotas.choices import DEPARTMENT_SCOPE_PREFIX, USER_SCOPE_PREFIX, LimitName, UsagePeriod, UsageStatus
from appliance.quotas.permissions import quota_scope

if TYPE_CHECKING:
    from appliance.accounts.models import User

LIMIT_FIELDS: tuple[str, ...] = tuple(LimitName.values)


class QuotaQuerySet(RestrictedQuerySet["Quota"]):
    pass


class Quota(models.Model):
    """Limits for one department (its whole subtree counts against them) or for one user.

    Exactly one of ``department`` and ``user`` is set. A null limit means unlimited; a request is
    checked against the user's quota and the quotas of the user's department and its ancestors.
    """

    department = models.OneToOneField(
        "accounts.Department", null=True, blank=True, on_delete=models.CASCADE, related_name="quota"
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="quota"
    )
    tokens_per_day = models.PositiveBigIntegerField(null=True, blank=True)
    tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    max_tokens_per_request = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = QuotaQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(department__isnull=False, user__isnull=True)
                | Q(department__isnull=True, user__isnull=False),
                name="quota_department_xor_user",
            )
        ]

    def __str__(self) -> str:
        return f"quota {self.scope_key}"

    @property
    def scope_key(self) -> str:
        if self.user_id is not None:
            return f"{USER_SCOPE_PREFIX}:{self.user_id}"
        return f"{DEPARTMENT_SCOPE_PREFIX}:{self.department_id}"

    def limits(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in LIMIT_FIELDS}

    def audit_snapshot(self) -> dict[str, Any]:
        return {"department": self.department_id, "user": self.user_id, **self.limits()}

    @staticmethod
    def restrict_scope(qs: QuotaQuerySet, user: User, action: str) -> QuotaQuerySet:
        return quota_scope(qs, user, action)


class UsageQuerySet(RestrictedQuerySet["UsageRecord"]):
    pass


class UsageRecord(models.Model):
    """One request through the chat portal or the gateway, written in batches by the usage drain.

    ``uid`` is minted when the request settles; the drain inserts with it as the idempotency key,
    so a record retried after a crash is never stored twice. ``day`` is the local (TIME_ZONE) date
    the request ended on: the same day the quota counters charged.
    """

    uid = models.CharField(max_length=32, unique=True)
    request_id = models.CharField(max_length=64, db_index=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    department = models.ForeignKey(
        "accounts.Department", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    # Deployments arrive with their own app; until then the id is kept as a plain number.
    deployment_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    model = models.CharField(max_length=128, blank=True, db_index=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # In a rolled-up row (``period`` set) these are sums over ``requests`` requests, of which
    # ``latency_count`` and ``ttft_count`` had a latency and a first token (means = sum / count).
    latency_ms = models.PositiveBigIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveBigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=UsageStatus.choices, default=UsageStatus.OK)
    # Why a ``rejected`` request was refused: the limit's name (``tokens_per_day``, …) or
    # ``quota_unavailable``; blank for every other status and for rejections recorded before it existed.
    reason = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(db_index=True)
    day = models.DateField(db_index=True)
    # "" for one request; "hour" or "day" for the sum of the requests of one hour or local day with the
    # same user, key, department, deployment, model and status (appliance/quotas/retention.py).
    period = models.CharField(max_length=4, choices=UsagePeriod.choices, default=UsagePeriod.REQUEST, blank=True)
    requests = models.PositiveIntegerField(default=1)
    latency_count = models.PositiveIntegerField(default=0)
    ttft_count = models.PositiveIntegerField(default=0)

    objects = UsageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["department", "day"], name="usage_department_day"),
            models.Index(fields=["user", "day"], name="usage_user_day"),
        ]

    def __str__(self) -> str:
        return f"usage {self.request_id or self.uid} {self.status}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.period:  # one request counts its own latency and first token (bulk inserts set them too)
            self.latency_count, self.ttft_count = int(self.latency_ms is not None), int(self.ttft_ms is not None)
        super().save(*args, **kwargs)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @staticmethod
    def restrict_scope(qs: UsageQuerySet, user: User, action: str) -> UsageQuerySet:
        if action != VIEW:
            return qs.none()  # written only by the drain
        if user.is_department_admin and user.department is not None:
            return qs.filter(department__path__startswith=user.department.path)
        return qs.filter(user=user)
