"""The models a user may chat with, each with the state its engines were last seen in.

Each engine is probed (``GET /v1/models``) in parallel with a short timeout and the answer is
cached in Redis for a few seconds, so a dead or hung engine costs the model list at most one
timeout every few seconds, and never blocks the chat page, which loads the list on its own.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from django.conf import settings

from appliance.accounts.models import User
from appliance.chat import live
from appliance.chat.choices import DEFAULT_TEMPERATURES
from appliance.chat.planning import default_max_tokens
from appliance.deployments import routing
from appliance.deployments.models import Deployment

OK, SLOW, DOWN = "ok", "slow", "down"
IDLE = "idle"  # on demand and not running: the first message starts it
_RANK = {OK: 0, SLOW: 1, DOWN: 2}
MAX_PROBE_THREADS = 16


@dataclass(frozen=True)
class AvailableModel:
    name: str
    engine: str
    reasoning: bool
    status: str
    chat_defaults: dict[str, float]
    default_max_tokens: int
    max_model_len: int


def probe(base_url: str, api_key: str = "") -> str:
    timeout = settings.CHAT_HEALTH_TIMEOUT_SECONDS
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{base_url}/v1/models", timeout=timeout, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        return DOWN
    except httpx.HTTPError:
        # Busy rather than dead: llama-cpp-python, for one, answers nothing while it generates.
        return SLOW
    return OK if response.status_code == httpx.codes.OK else DOWN


def health(keys: dict[str, str]) -> dict[str, str]:
    """State of each engine (base URL → its key): from the cache, else probed now (all at once)."""
    urls = sorted(keys)
    if not urls:
        return {}
    redis = live.client()
    cached = redis.mget([f"chat:health:{url}" for url in urls])
    found = {url: state for url, state in zip(urls, cached, strict=True) if state}
    missing = [url for url in urls if url not in found]
    if missing:
        with ThreadPoolExecutor(max_workers=min(MAX_PROBE_THREADS, len(missing))) as pool:
            fresh = dict(zip(missing, pool.map(probe, missing, [keys[url] for url in missing]), strict=True))
        pipe = redis.pipeline(transaction=False)
        for url, state in fresh.items():
            pipe.set(f"chat:health:{url}", state, ex=settings.CHAT_HEALTH_CACHE_SECONDS)
        pipe.execute()
        found.update(fresh)
    return found


def available_models(user: User) -> list[AvailableModel]:
    by_name: dict[str, list[routing.Endpoint]] = defaultdict(list)
    for endpoint in routing.endpoints(user):
        by_name[endpoint.served_model_name].append(endpoint)
    idle = {name: ids[0] for name, ids in routing.on_demand_to_start(user).items() if name not in by_name}
    ids = {endpoints[0].deployment_id for endpoints in by_name.values()} | set(idle.values())
    deployments = Deployment.objects.select_related("profile_version").in_bulk(ids)
    states = health({e.base_url: e.api_key for endpoints in by_name.values() for e in endpoints})
    models = []
    for name, endpoints in by_name.items():
        best = min((states.get(e.base_url, DOWN) for e in endpoints), key=_RANK.__getitem__)
        deployment = deployments[endpoints[0].deployment_id]
        models.append(_model(name, deployment, best, endpoints[0].is_reasoning))
    for name, deployment_id in idle.items():
        deployment = deployments[deployment_id]
        models.append(_model(name, deployment, IDLE, routing.is_reasoning(deployment.model_slug)))
    return sorted(models, key=lambda m: m.name)


def _model(name: str, deployment: Deployment, status: str, reasoning: bool) -> AvailableModel:
    version = deployment.profile_version
    return AvailableModel(
        name=name, engine=deployment.engine, reasoning=reasoning, status=status,
        chat_defaults={**DEFAULT_TEMPERATURES, **(version.chat_defaults or {})},
        default_max_tokens=default_max_tokens(version.max_model_len, version.default_max_tokens),
        max_model_len=version.max_model_len,
    )  # fmt: skip


def as_dicts(models: list[AvailableModel]) -> list[dict[str, Any]]:
    return [asdict(m) for m in models]
