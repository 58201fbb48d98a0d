"""A request for an on-demand model that is not running: start it, wait while it loads, or say when to retry.

The start is ``deployments.ondemand.wake``: every waiting request calls it, the database's
conditional UPDATE lets exactly one of them (in any process) schedule the launch. The requests
then wait for the deployment to run, up to ``APPLIANCE_ON_DEMAND_WAIT_SECONDS`` counted from their
arrival; past that they get a 503 with ``Retry-After``, which OpenAI's clients honour. Waiters of
one model in a process share one database read per ``POLL_SECONDS``, so a burst of first requests
costs a few queries a second, not a few per request.
"""

from __future__ import annotations

import asyncio
import time
import weakref

from django.conf import settings

from appliance.core import dbthreads
from appliance.core.exceptions import ServiceError
from appliance.deployments import ondemand
from appliance.gateway import admission
from appliance.gateway.errors import UNAVAILABLE, GatewayError

POLL_SECONDS = 0.5

_Polls = dict[tuple[int, ...], tuple[float, "asyncio.Task[ondemand.Progress]"]]
_polls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Polls] = weakref.WeakKeyDictionary()


def _retry_after() -> dict[str, str]:
    return {"Retry-After": str(settings.APPLIANCE_ON_DEMAND_RETRY_AFTER_SECONDS)}


def not_ready(message: str, code: str) -> GatewayError:
    return GatewayError(503, message, type=UNAVAILABLE, code=code, param="model", headers=_retry_after())


async def _progress(deployment_ids: tuple[int, ...]) -> ondemand.Progress:
    polls = _polls.setdefault(asyncio.get_running_loop(), {})
    hit = polls.get(deployment_ids)
    if hit is None or hit[0] <= time.monotonic():
        task = asyncio.ensure_future(dbthreads.run(ondemand.progress, list(deployment_ids)))
        hit = polls[deployment_ids] = (time.monotonic() + POLL_SECONDS, task)
    # Shielded: one waiter's client leaving must not cancel the read the others wait for.
    return await asyncio.shield(hit[1])


async def until_running(route: admission.Route, secret: str, model: str) -> admission.Route:
    """The route once a replica of ``model`` runs; a 503 GatewayError if it cannot start or takes too long."""
    deadline = time.monotonic() + settings.APPLIANCE_ON_DEMAND_WAIT_SECONDS
    try:
        await dbthreads.run(ondemand.wake_for_request, route.principal.user_id, route.starting, model)
    except ServiceError as exc:  # no free units, image gone, profile no longer valid: said as is
        message = f"`{model}` is not running and cannot start now: {exc.message}"
        raise not_ready(message, "model_cannot_start") from exc
    while True:
        state = await _progress(route.starting)
        if state.ready:
            fresh = await admission.route(secret, model)
            if fresh.endpoints:
                return fresh
        elif state.failed:
            raise not_ready(f"`{model}` failed to start: {state.detail}", "model_start_failed")
        left = deadline - time.monotonic()
        if left <= 0:
            waited = settings.APPLIANCE_ON_DEMAND_WAIT_SECONDS
            message = f"`{model}` is starting ({state.detail}) and was not ready within {waited} s; retry shortly."
            raise not_ready(message, "model_starting")
        await asyncio.sleep(min(POLL_SECONDS, left))
