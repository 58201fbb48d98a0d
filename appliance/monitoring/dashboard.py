"""What the admin dashboard shows, each part limited to what the viewer may see (``restrict``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import F, Q, Sum
from django.utils import timezone

from appliance.accounts.models import User
from appliance.audit.models import AuditRecord
from appliance.chat.choices import Status as ChatStatus
from appliance.chat.models import Message
from appliance.core.querysets import VIEW
from appliance.deployments.choices import ACTIVE_STATES, State
from appliance.deployments.models import Deployment
from appliance.gpus.metrics import history
from appliance.gpus.models import Gpu
from appliance.monitoring.permissions import countable_chats
from appliance.quotas.choices import UsageStatus
from appliance.quotas.models import UsageRecord
from appliance.quotas.windows import local_zone

GPU_HOURS, MAX_GPUS, TOKEN_DAYS, RECENT = 6, 16, 14, 10


def gpu_series(user: User) -> list[dict[str, Any]]:
    """Utilisation (%) and memory used (GiB) over the last hours, one series per visible GPU."""
    now = timezone.now()
    series = []
    for gpu in Gpu.objects.restrict(user, VIEW).select_related("node").order_by("node__name", "index")[:MAX_GPUS]:
        points = history(gpu.pk, now - timedelta(hours=GPU_HOURS), now, step=300).points
        series.append(
            {
                "name": f"{gpu.node.name} GPU{gpu.index}",
                "util": [[p["at"], p["util_gpu"]] for p in points],
                "memory_gib": [[p["at"], _gib(p["memory_used"])] for p in points],
            }
        )
    return series


def _gib(value: float | None) -> float | None:
    return round(value / 1024**3, 2) if value is not None else None


def tokens_per_day(user: User, by: str) -> dict[str, Any]:
    """Tokens per local day for the last two weeks, one series per department or per model."""
    since = timezone.now().astimezone(local_zone()).date() - timedelta(days=TOKEN_DAYS - 1)
    days = [(since + timedelta(days=i)).isoformat() for i in range(TOKEN_DAYS)]
    field = "department__name" if by == "department" else "model"
    rows = (
        UsageRecord.objects.restrict(user, VIEW)
        .filter(day__gte=since)
        .order_by()
        .values("day", field)
        .annotate(tokens=Sum(F("prompt_tokens") + F("completion_tokens")))
    )
    series: dict[str, list[int]] = {}
    for row in rows:
        values = series.setdefault(row[field] or "—", [0] * TOKEN_DAYS)
        values[days.index(row["day"].isoformat())] += int(row["tokens"] or 0)
    return {"days": days, "series": [{"name": name, "data": data} for name, data in sorted(series.items())]}


def deployments(user: User) -> list[dict[str, Any]]:
    shown = Deployment.objects.restrict(user, VIEW).filter(state__in=[*ACTIVE_STATES, State.FAILED])
    return [
        {"name": d.name, "model": d.served_model_name, "state": d.state, "state_label": d.get_state_display(),
         "reason": d.state_reason[:200], "restarts": d.restart_count}
        for d in shown.order_by("name")[:50]
    ]  # fmt: skip


def active_chats(user: User) -> int:
    """Answers being generated now: a count, never their content."""
    return countable_chats(Message.objects.filter(status=ChatStatus.STREAMING), user).count()


def recent_failures(user: User) -> list[dict[str, Any]]:
    usage = UsageRecord.objects.restrict(user, VIEW).filter(Q(status=UsageStatus.ERROR)).order_by("-created_at")
    failed = Deployment.objects.restrict(user, VIEW).filter(state=State.FAILED).order_by("-state_changed_at")
    rows: list[dict[str, Any]] = [
        {"at": r.created_at, "what": r.model or "—", "detail": r.request_id} for r in usage[:RECENT]
    ]
    rows += [{"at": d.state_changed_at, "what": d.name, "detail": d.state_reason[:200]} for d in failed[:RECENT]]
    return sorted(rows, key=lambda row: row["at"], reverse=True)[:RECENT]


def recent_audit(user: User) -> list[AuditRecord]:
    return list(AuditRecord.objects.restrict(user, VIEW).order_by("-seq")[:RECENT])


def charts(user: User) -> dict[str, Any]:
    """The chart data the page fetches (and refreshes) as JSON."""
    return {
        "gpus": gpu_series(user),
        "tokens_by_department": tokens_per_day(user, "department"),
        "tokens_by_model": tokens_per_day(user, "model"),
        "active_chats": active_chats(user),
    }
