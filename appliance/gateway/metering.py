"""The gateway's only contact with the quotas app: scopes, admission (reserve) and the guard that settles.

A request reserves its worst case (estimated prompt + max_tokens) before the upstream call; the
``Guard`` returned settles to the real usage exactly once, whatever way the request ends, and
queues the usage record in the same Redis script (appliance/quotas/usage.py).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from django.conf import settings

from appliance.accounts.models import User
from appliance.gateway.errors import INVALID_REQUEST, RATE_LIMIT, UNAVAILABLE, GatewayError
from appliance.gateway.protocol import Call
from appliance.quotas.choices import UsageStatus
from appliance.quotas.limiter import QuotaExceeded, QuotaScope, QuotaUnavailable, max_tokens_cap
from appliance.quotas.services import scopes_for as _scopes_for
from appliance.quotas.usage import Guard, RequestMeta, abegin

if TYPE_CHECKING:
    from appliance.deployments.routing import Endpoint
    from appliance.gateway.admission import Route

Scope = QuotaScope
__all__ = ["Guard", "Scope", "UsageStatus", "begin", "scopes_for", "served_by"]


def scopes_for(user: User) -> list[Scope]:
    return _scopes_for(user)


def reservation_id(request_id: str) -> str:
    """Unique per call even when a client reuses its X-Request-ID; 64 characters at most, as records store."""
    return f"{request_id[:55]}-{secrets.token_hex(4)}"


def _max_tokens(call: Call, scopes: list[Scope]) -> int:
    cap = max_tokens_cap(scopes)
    if call.max_tokens is None and cap is not None:
        # The engine must not write past what the quota lets one request have.
        call.body["max_tokens"] = cap
    return call.max_tokens or cap or settings.APPLIANCE_GATEWAY_DEFAULT_MAX_TOKENS


async def begin(route: Route, call: Call, request_id: str) -> Guard:
    """Reserve for ``call``; a refusal becomes OpenAI's 429 (or 400 for max_tokens), Redis down a 503."""
    scopes = list(route.scopes)
    who = route.principal
    meta = RequestMeta(who.user_id, who.department_id, who.api_key_id, None, call.model)
    try:
        return await abegin(
            scopes,
            meta,
            request_id=reservation_id(request_id),
            prompt_tokens=call.prompt_estimate,
            max_tokens=_max_tokens(call, scopes),
        )
    except QuotaExceeded as exc:
        refused = exc.status_code == 429
        kind, param = (RATE_LIMIT, None) if refused else (INVALID_REQUEST, "max_tokens")
        status, headers = exc.status_code, exc.headers
        raise GatewayError(status, exc.message, type=kind, code=exc.code, param=param, headers=headers) from exc
    except QuotaUnavailable as exc:
        raise GatewayError(503, exc.message, type=UNAVAILABLE, code=exc.code, headers=dict(exc.headers)) from exc


def served_by(guard: Guard, endpoint: Endpoint) -> None:
    """Name the deployment in the usage record once a replica has answered."""
    guard.meta = replace(guard.meta, deployment_id=endpoint.deployment_id)


async def fail(guard: Guard) -> None:
    """Settle a request that ended in an error before any token (upstream down, upstream 4xx/5xx)."""
    await guard.afinish(UsageStatus.ERROR)
