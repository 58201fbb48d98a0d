"""The gateway's only contact with the quotas app: scopes, admission (reserve) and the guard that settles.

A request reserves its worst case before the upstream call: an upper bound of the prompt (its text
bounded per byte, plus the chat template measured on the engine, appliance/engines/prompt.py) and
max_tokens for every answer the engine may write (n or best_of for each prompt of a batch); the
``Guard`` returned settles to the real usage exactly once, whatever way the request ends, and
queues the usage record in the same Redis script (appliance/quotas/usage.py).
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from django.conf import settings

from appliance.accounts.models import User
from appliance.core import background
from appliance.deployments.routing import worst_template
from appliance.gateway.errors import INVALID_REQUEST, RATE_LIMIT, UNAVAILABLE, GatewayError
from appliance.gateway.protocol import Call, Kind
from appliance.quotas.choices import UsageStatus
from appliance.quotas.limiter import QuotaExceeded, QuotaScope, QuotaUnavailable, max_tokens_cap
from appliance.quotas.services import scopes_for as _scopes_for
from appliance.quotas.usage import Guard, RequestMeta, abegin

if TYPE_CHECKING:
    from appliance.deployments.routing import Endpoint
    from appliance.gateway.routes import Route

Scope = QuotaScope
__all__ = ["Guard", "Scope", "UsageStatus", "begin", "scopes_for", "served_by"]


def scopes_for(user: User) -> list[Scope]:
    return _scopes_for(user)


def reservation_id(request_id: str) -> str:
    """Unique per call even when a client reuses its X-Request-ID; 64 characters at most, as records store."""
    return f"{request_id[:55]}-{secrets.token_hex(4)}"


def _max_tokens(call: Call, scopes: list[Scope]) -> int:
    """The client's max tokens, else the quota's cap, else the configured default — always sent to
    the engine, which would otherwise write up to its context length while the quota held less."""
    if call.max_tokens is None:
        call.max_tokens = max_tokens_cap(scopes) or settings.APPLIANCE_GATEWAY_DEFAULT_MAX_TOKENS
        call.body["max_tokens"] = call.max_tokens
    return call.max_tokens


def prompt_tokens(call: Call, route: Route) -> int:
    """An upper bound of what the engine will bill for the prompt, its chat template included."""
    if call.kind is Kind.CHAT:
        return call.prompt_estimate + worst_template(route.endpoints).chat(call.messages)
    return call.prompt_estimate


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
            prompt_tokens=prompt_tokens(call, route),
            max_tokens=_max_tokens(call, scopes),
            sequences=call.sequences,
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


def settle_later(guard: Guard) -> None:
    """Settle a whole answer once it has gone out, not before: the client does not wait for the Redis
    round trip (a third of the gateway's own time for a short answer). The quota stays safe meanwhile:
    the reservation holds the worst case until the settlement replaces it with the real usage. Not for
    streams, whose settlement already comes after their last byte."""
    background.start(guard.afinish())


async def fail(guard: Guard) -> None:
    """Settle a request that ended in an error before any token (upstream down, upstream 4xx/5xx)."""
    await guard.afinish(UsageStatus.ERROR)
