"""How much of each department's token quota is used, for the "quota nearly used" alert."""

from __future__ import annotations

from appliance.quotas.choices import LimitName
from appliance.quotas.limiter import QuotaScope, current_usage
from appliance.quotas.models import Quota


def quota_usage_ratios() -> list[tuple[int, str, float]]:
    """(department id, limit name, used/limit) for every department quota with a token limit."""
    quotas = list(Quota.objects.filter(department__isnull=False).exclude(tokens_per_day=None, tokens_per_month=None))
    scopes = [
        QuotaScope(key=q.scope_key, tokens_per_day=q.tokens_per_day, tokens_per_month=q.tokens_per_month)
        for q in quotas
    ]
    usage = current_usage(scopes)
    if not usage:
        return []
    ratios = []
    for quota, used in zip(quotas, usage, strict=True):
        assert quota.department_id is not None
        if quota.tokens_per_day:
            ratios.append(
                (quota.department_id, LimitName.TOKENS_PER_DAY.value, used.tokens_today / quota.tokens_per_day)
            )
        if quota.tokens_per_month:
            month = used.tokens_this_month / quota.tokens_per_month
            ratios.append((quota.department_id, LimitName.TOKENS_PER_MONTH.value, month))
    return ratios
