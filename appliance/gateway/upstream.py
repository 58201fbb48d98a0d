"""The gateway's side of the engine client (appliance/engines/client.py): its failures in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Sequence

from appliance.deployments.routing import Endpoint
from appliance.engines import client
from appliance.engines.client import Builder, Opened
from appliance.gateway.errors import UNAVAILABLE, UPSTREAM, GatewayError, no_upstream

__all__ = ["Builder", "Opened", "error_from", "open_first"]
_KEPT_STATUSES = frozenset({400, 413, 422})  # the client's fault, said by the engine: passed on as is


async def open_first(endpoints: Sequence[Endpoint], build: Builder, request_id: str) -> Opened:
    """``client.open_first``: 503 when no replica answered, 504 when one did not in time."""
    try:
        return await client.open_first(endpoints, build, request_id)
    except client.TimedOut as exc:
        raise GatewayError(504, exc.detail, type=UPSTREAM, code="upstream_timeout") from exc
    except client.Unreachable as exc:
        raise no_upstream(endpoints[0].served_model_name if endpoints else "", exc.detail) from exc


async def error_from(opened: Opened) -> GatewayError:
    """An engine's non-2xx answer in OpenAI's shape (vLLM, llama.cpp and Ollama each word it differently)."""
    try:
        raw = await client.error_body(opened)
    except client.EngineFailure:
        raw = b""
    engine_status = opened.status
    message = client.error_message(raw) or f"The engine answered HTTP {engine_status}."
    status = engine_status if engine_status in _KEPT_STATUSES else 502
    if engine_status == 429:
        return GatewayError(429, message, type="rate_limit_error", code="engine_busy", headers={"Retry-After": "1"})
    if status == 502:
        code, kind = f"upstream_{engine_status}", UPSTREAM if engine_status != 503 else UNAVAILABLE
        return GatewayError(502, message, type=kind, code=code)
    return GatewayError(status, message, code="upstream_rejected")
