"""The models a user may chat with, each with the state its engines are in.

The state is the one the node workers keep on the instance rows (a replica is ``running`` once its
health check passed, and stops being so when its container dies or its node is lost): the list
costs two queries and never waits on an engine, however many there are or however busy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from appliance.accounts.models import User
from appliance.chat.choices import DEFAULT_TEMPERATURES
from appliance.chat.planning import default_max_tokens
from appliance.deployments import routing
from appliance.deployments.models import Deployment

OK, SLOW, DOWN = "ok", "slow", "down"  # SLOW: kept for the API's schema; the rows do not tell it apart
IDLE = "idle"  # on demand and not running: the first message starts it


@dataclass(frozen=True)
class AvailableModel:
    name: str
    engine: str
    reasoning: bool
    status: str
    chat_defaults: dict[str, float]
    default_max_tokens: int
    max_model_len: int


def available_models(user: User) -> list[AvailableModel]:
    by_name: dict[str, list[routing.Endpoint]] = defaultdict(list)
    for endpoint in routing.endpoints(user):
        by_name[endpoint.served_model_name].append(endpoint)
    # Running deployments none of whose replicas is running now (a dead container, a lost node).
    down: dict[str, int] = {}
    for pk, name in routing.usable_deployments(user).order_by("pk").values_list("pk", "served_model_name"):
        if name not in by_name:
            down.setdefault(name, pk)
    idle = {n: ids[0] for n, ids in routing.on_demand_to_start(user).items() if n not in by_name and n not in down}
    ids = {endpoints[0].deployment_id for endpoints in by_name.values()} | set(down.values()) | set(idle.values())
    deployments = Deployment.objects.select_related("profile_version").in_bulk(ids)
    models = []
    for name, endpoints in by_name.items():
        models.append(_model(name, deployments[endpoints[0].deployment_id], OK, endpoints[0].is_reasoning))
    for name, deployment_id in down.items():
        deployment = deployments[deployment_id]
        models.append(_model(name, deployment, DOWN, routing.is_reasoning(deployment.model_slug)))
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
