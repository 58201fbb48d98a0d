"""The OpenAI-compatible endpoints: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``.

Async Django views under granian. A generation request goes: parse the body → key, replicas and
quota scopes (admission, usually from cache) → reserve (metering) → send to the least busy replica,
retrying another while nothing has come back (upstream) → relay (relay / translate_ollama). The
reservation is settled exactly once on every ending: done, client gone (Django cancels the task
and closes the stream, which closes the engine's request), engine failure.

``X-Console-Overhead-Ms`` on every response is the time spent in this view before the engine
request was sent (key check, routing, quota); for a whole (non-streamed) answer the time spent on
it after the engine's answer arrived is added. Middleware before the view is not included.
A request for an on-demand model that is not running waits while it starts (``starting``); that
wait is not overhead: it is reported in ``X-Console-Cold-Start-Ms``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from appliance.deployments import lastuse
from appliance.deployments.routing import Endpoint
from appliance.engines import client, sse
from appliance.engines.registry import Dialect, speaks
from appliance.gateway import admission, metering, relay, screening, starting, translate_ollama, upstream
from appliance.gateway.errors import UPSTREAM, GatewayError
from appliance.gateway.protocol import Call, Kind, parse, refuse_unlisted_media
from appliance.gateway.screening import SseScreen
from appliance.gateway.streaming import StreamedAnswer
from appliance.safety import labels, recording
from appliance.safety.choices import Channel
from appliance.safety.matcher import Matcher

OVERHEAD_HEADER = "X-Console-Overhead-Ms"
COLD_START_HEADER = "X-Console-Cold-Start-Ms"  # only on a request that waited for an on-demand model to start


def _timed(response: HttpResponseBase, overhead_s: float) -> HttpResponseBase:
    response[OVERHEAD_HEADER] = f"{overhead_s * 1000:.2f}"
    return response


def _since(started: float) -> float:
    return time.perf_counter() - started


def _request_id(request: HttpRequest) -> str:
    return str(getattr(request, "request_id", "") or "gateway")


def _secret(request: HttpRequest) -> str:
    return admission.bearer_secret(request.headers.get("Authorization", ""))


@csrf_exempt
async def list_models(request: HttpRequest) -> HttpResponseBase:
    started = time.perf_counter()
    try:
        found = await admission.models(_secret(request))
    except GatewayError as exc:
        return _timed(exc.response(), _since(started))
    data = [{"id": name, "object": "model", "created": created, "owned_by": "appliance"} for name, created in found]
    return _timed(JsonResponse({"object": "list", "data": data}), _since(started))


@csrf_exempt
async def retrieve_model(request: HttpRequest, model: str) -> HttpResponseBase:
    started = time.perf_counter()
    try:
        found = dict(await admission.models(_secret(request)))
        if model not in found:
            raise GatewayError(404, f"The model `{model}` does not exist.", code="model_not_found", param="model")
    except GatewayError as exc:
        return _timed(exc.response(), _since(started))
    payload = {"id": model, "object": "model", "created": found[model], "owned_by": "appliance"}
    return _timed(JsonResponse(payload), _since(started))


@csrf_exempt
async def unknown_route(request: HttpRequest, rest: str) -> HttpResponseBase:
    return _timed(GatewayError(404, f"Unknown endpoint /v1/{rest}.", code="unknown_url").response(), 0.0)


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    return await _generate(request, Kind.CHAT)


@csrf_exempt
async def completions(request: HttpRequest) -> HttpResponseBase:
    return await _generate(request, Kind.COMPLETION)


async def _generate(request: HttpRequest, kind: Kind) -> HttpResponseBase:
    started = time.perf_counter()
    try:
        call, route = await _admit(request, kind)
        safety = _safety(request, call, route)
        guard = await metering.begin(route, call, _request_id(request))
    except GatewayError as exc:
        return _timed(exc.response(), _since(started))
    if route.endpoints:
        return await _forward(call, route, guard, started, _request_id(request), safety)
    # An on-demand model that is not running: the quota admitted the request, now start it and wait.
    waiting = time.perf_counter()
    try:
        route = await starting.until_running(route, _secret(request), call.model)
    except GatewayError as exc:
        await metering.fail(guard)
        return _timed(exc.response(), _since(started))
    except BaseException as exc:  # the client left while the model was starting (the start goes on)
        await guard.afinish(metering.UsageStatus.CANCELLED if isinstance(exc, asyncio.CancelledError) else None)
        raise
    waited = _since(waiting)
    # The overhead header keeps meaning the console's own time; the wait for the start has its own.
    response = await _forward(call, route, guard, started + waited, _request_id(request), safety)
    response[COLD_START_HEADER] = f"{waited * 1000:.0f}"
    return response


def _safety(request: HttpRequest, call: Call, route: admission.Route) -> Safety | None:
    """The caller's content-safety rules, after checking the prompt against them (raises when it is blocked)."""
    if route.safety is None:
        return None
    p = route.principal
    context = recording.Context(
        p.user_id, p.username, p.department_id, Channel.GATEWAY, call.model, _request_id(request)
    )
    language = screening.request_language(request)
    screening.check_prompt(route.safety, call, context, language)
    return Safety(route.safety, context, language)


async def _admit(request: HttpRequest, kind: Kind) -> tuple[Call, admission.Route]:
    if request.method != "POST":
        raise GatewayError(405, "Use POST.", code="method_not_allowed")
    secret = _secret(request)
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.APPLIANCE_GATEWAY_MAX_BODY_BYTES:
        raise GatewayError(413, "The request body is too large.", code="request_too_large")
    try:
        call = parse(request.read(), kind)
    except GatewayError:
        await admission.models(secret)  # a bad key is reported before a bad body, as OpenAI does
        raise
    route = await admission.route(secret, call.model)
    if call.media_urls:
        # Any replica may get the request: its URLs must be allowed for every one of them.
        refuse_unlisted_media(call, frozenset.intersection(*(e.media_domains for e in route.endpoints)))
    return call, route


def _builder(call: Call) -> upstream.Builder:
    """The request for one replica, built once per engine kind (replicas of a name may differ)."""
    built: dict[str, tuple[str, bytes]] = {}

    def build(endpoint: Endpoint) -> tuple[str, bytes]:
        if endpoint.engine not in built:
            if speaks(endpoint.engine, Dialect.OLLAMA):
                path, body = translate_ollama.PATHS[call.kind], translate_ollama.request_body(call)
            else:
                path, body = call.kind.path, call.body
                if call.stream:
                    # Ask for the usage chunk always: exact counts for the quota; dropped again if unasked.
                    body = sse.ask_usage(body)
            built[endpoint.engine] = (path, json.dumps(body, ensure_ascii=False).encode())
        return built[endpoint.engine]

    return build


@dataclass(frozen=True)
class Safety:
    matcher: Matcher
    context: recording.Context
    language: str


async def _forward(
    call: Call, route: admission.Route, guard: metering.Guard, started: float, request_id: str, safety: Safety | None
) -> HttpResponseBase:
    overhead = _since(started)
    try:
        opened = await upstream.open_first(route.endpoints, _builder(call), request_id)
    except GatewayError as exc:
        await metering.fail(guard)
        return _timed(exc.response(), overhead)
    except BaseException as exc:  # the client went away while the engine was being reached
        await guard.afinish(metering.UsageStatus.CANCELLED if isinstance(exc, asyncio.CancelledError) else None)
        raise
    metering.served_by(guard, opened.endpoint)
    lastuse.touch(opened.endpoint.deployment_id)
    if not opened.ok:
        error = await upstream.error_from(opened)
        await _close(opened)
        await metering.fail(guard)
        return _timed(error.response(), overhead)
    if call.stream:
        return _labelled(_timed(_streaming(call, opened, guard, safety), overhead), route, call)
    return _labelled(await _whole(call, opened, guard, overhead, safety), route, call)


def _labelled(response: HttpResponseBase, route: admission.Route, call: Call) -> HttpResponseBase:
    """An answer (not an error) names the model and the appliance that generated it, unless the department opted out."""
    if route.ai_label and response.status_code < 400:
        response[labels.HEADER] = labels.header_value(call.model)
    return response


async def _close(opened: upstream.Opened) -> None:
    try:
        await client.close(opened)
    finally:
        lastuse.touch(opened.endpoint.deployment_id)


def _streaming(
    call: Call, opened: upstream.Opened, guard: metering.Guard, safety: Safety | None
) -> StreamingHttpResponse:
    screen = SseScreen(safety.matcher, safety.context, safety.language) if safety is not None else None
    body = StreamedAnswer(call, opened, guard, screen).body()
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a reverse proxy in front must not buffer the stream
    return response


async def _whole(
    call: Call, opened: upstream.Opened, guard: metering.Guard, overhead: float, safety: Safety | None
) -> HttpResponseBase:
    try:
        try:
            if speaks(opened.endpoint.engine, Dialect.OLLAMA):
                raw = await client.read_all(opened)
                received = time.perf_counter()
                body = json.dumps(translate_ollama.whole(raw, call, guard), ensure_ascii=False).encode()
            else:
                body = await relay.read_whole(opened, guard)
                received = time.perf_counter()
        finally:
            await _close(opened)
    except (client.EngineFailure, ValueError) as exc:
        guard.status = metering.UsageStatus.ERROR
        metering.settle_later(guard)
        error = GatewayError(502, f"The engine's answer was cut short or unreadable: {exc}", type=UPSTREAM)
        return _timed(error.response(), overhead)
    except BaseException as exc:  # the client left (cancelled), or a bug: settled before going on
        cancelled = isinstance(exc, asyncio.CancelledError)
        await guard.afinish(metering.UsageStatus.CANCELLED if cancelled else metering.UsageStatus.ERROR)
        raise
    metering.settle_later(guard)  # after the answer went out (see settle_later)
    if safety is not None:
        try:
            body = screening.screen_whole(body, safety.matcher, safety.context, safety.language)
        except GatewayError as exc:
            return _timed(exc.response(), overhead + _since(received))
    response = HttpResponse(body, content_type="application/json")
    return _timed(response, overhead + _since(received))
