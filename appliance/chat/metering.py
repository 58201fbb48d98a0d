"""Chat answers count against the same quotas as the gateway, and write the same usage records.

A thin layer over ``appliance.quotas``: admission before the engine is called (the worst case,
prompt estimate + max_tokens, is reserved), settlement to the real usage on every ending, and the
"remaining quota" line shown under each answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from appliance.accounts.models import User
from appliance.core.dbthreads import db
from appliance.core.exceptions import ServiceError
from appliance.core.ttlcache import TtlCache
from appliance.quotas import limiter, usage
from appliance.quotas import services as quota_services

QUOTA_LIMITS = ("tokens_per_day", "tokens_per_month")
_USED = {"tokens_per_day": "tokens_today", "tokens_per_month": "tokens_this_month"}


class QuotaRefused(Exception):
    """The quota refused the answer before the engine was called."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


@dataclass(frozen=True)
class Admission:
    request_id: str
    user_id: int
    department_id: int | None
    deployment_id: int
    model: str
    prompt_tokens: int
    max_tokens: int


# The user's quota scopes, kept as the gateway keeps a key's (appliance.core.ttlcache): a quota changed
# takes effect in chat and /v1 alike within those seconds, and an answer costs no query for them
# (three per answer were a tenth of the chat's database time at 300 chats at once). They are made from
# the quotas of the user's department, kept per department: at 256 chats each user asked about once
# in two of the cache's lifetimes, and the queries of those misses were 5 % of a worker's time (py-spy).
_scope_cache: TtlCache[int, list[Any]] = TtlCache()
_department_cache: TtlCache[int | None, quota_services.DepartmentQuotas] = TtlCache()


def clear_cache() -> None:
    _scope_cache.clear()
    _department_cache.clear()


def _scopes(user_id: int, user: User | None = None) -> list[Any]:
    """The user's quota scopes; ``user``: the user, with their department, if the caller has it."""
    found, scopes = _scope_cache.get(user_id)
    if found and scopes is not None:
        return scopes
    if user is None:
        user = User.objects.select_related("department").get(pk=user_id)
    found, quotas = _department_cache.get(user.department_id)
    if not found or quotas is None:
        quotas = quota_services.department_quotas(user.department)
        _department_cache.put(user.department_id, quotas)
    scopes = quota_services.scopes_in(user, quotas)
    _scope_cache.put(user_id, scopes)
    return scopes


async def _ascopes(user_id: int) -> list[Any]:
    """:func:`_scopes` from the event loop: a trip to the database threads only when they are not kept."""
    found, scopes = _scope_cache.get(user_id)
    if found and scopes is not None:
        return scopes
    return await db(_scopes)(user_id)


def max_tokens_cap(user: User) -> int | None:
    """The smallest ``max_tokens_per_request`` among the user's quotas (None: no cap)."""
    return limiter.max_tokens_cap(_scopes(user.pk, user))


@asynccontextmanager
async def admitted(adm: Admission) -> AsyncIterator[usage.Guard]:
    """Reserve, yield the guard, settle however the block ends (stop and failures included)."""
    scopes = await _ascopes(adm.user_id)
    meta = usage.RequestMeta(
        user_id=adm.user_id, department_id=adm.department_id, deployment_id=adm.deployment_id, model=adm.model
    )
    try:
        guard = await usage.abegin(
            scopes, meta, request_id=adm.request_id, prompt_tokens=adm.prompt_tokens, max_tokens=adm.max_tokens
        )
    except ServiceError as exc:
        raise QuotaRefused(exc.code, exc.message, exc.details) from exc
    async with guard:
        yield guard


def _tightest(rows: list[dict[str, Any]], limit: str) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    for row in rows:
        if row.get(limit) is None or row.get("usage") is None:
            continue
        used = int(row["usage"][_USED[limit]]) + int(row["usage"].get("tokens_in_flight", 0))
        remaining = max(0, int(row[limit]) - used)
        if best is None or remaining < best["remaining"]:
            best = {"limit": int(row[limit]), "used": used, "remaining": remaining, "scope": row.get("label", "")}
    return best


async def aremaining(user_id: int) -> dict[str, Any]:
    """The tightest daily and monthly token budgets left to the user (their own, their department's, …),
    shown under every answer; read on the event loop, and not at all when no scope has a token limit."""
    scopes = await _ascopes(user_id)
    if not _token_limited(scopes):
        return {"available": True}
    return _remaining_of(await quota_services.aremaining_in(scopes))


def _token_limited(scopes: list[Any]) -> bool:
    return any(getattr(scope, limit) is not None for scope in scopes for limit in QUOTA_LIMITS)


def _remaining_of(report: dict[str, Any]) -> dict[str, Any]:
    if not report["available"]:
        return {"available": False}
    found = {limit: _tightest(report["scopes"], limit) for limit in QUOTA_LIMITS}
    return {"available": True, **{k: v for k, v in found.items() if v is not None}}
