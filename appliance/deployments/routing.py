"""Which engines a user may talk to, and where they listen. Used by the gateway and the chat portal.

Who may use which deployment is the gate's rule: ``Deployment.objects.restrict(user, USE)``
(their department's and its parents', see ``Deployment.restrict_scope``). An on-demand
deployment that is not running is offered too, unless a person stopped it: a request for it
starts it (``ondemand.wake``) and waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q, QuerySet

from appliance.accounts.models import User
from appliance.core.querysets import USE
from appliance.deployments.choices import Desired, Role, State
from appliance.deployments.engine_keys import engine_key
from appliance.deployments.models import Deployment, Instance
from appliance.engines.prompt import TemplateCost


def default_template_cost() -> TemplateCost:
    """The allowance for an engine whose template cost was not measured (yet)."""
    return TemplateCost(settings.APPLIANCE_TEMPLATE_TOKENS, settings.APPLIANCE_MESSAGE_TOKENS)


def template_cost(inst: Instance) -> TemplateCost:
    if inst.template_tokens is None or inst.message_tokens is None:
        return default_template_cost()
    return TemplateCost(inst.template_tokens, inst.message_tokens)


def worst_template(endpoints: list[Endpoint] | tuple[Endpoint, ...]) -> TemplateCost:
    """The dearest template among replicas the request may go to (they may run different engines)."""
    costs = [e.template for e in endpoints] or [default_template_cost()]
    return TemplateCost(max(c.template for c in costs), max(c.per_message for c in costs))


@dataclass(frozen=True)
class Endpoint:
    deployment_id: int
    instance_id: int
    served_model_name: str
    engine: str
    base_url: str  # e.g. http://127.0.0.1:20000 ; OpenAI routes are under /v1 (Ollama: native under /api)
    department_id: int
    is_reasoning: bool = False
    template: TemplateCost = field(default_factory=lambda: TemplateCost(0, 0))
    api_key: str = field(default="", repr=False)  # the engine's key (engine_keys.py), sent as Bearer
    media_domains: frozenset[str] = frozenset()  # hosts its department lets the engine fetch images from


# Not running, but started by the next request: on demand, and not stopped by a person.
STARTABLE_ON_DEMAND = Q(on_demand=True) & ~Q(state=State.RUNNING) & ~Q(desired=Desired.STOPPED)


def usable_deployments(user: User) -> QuerySet[Deployment]:
    """The running deployments the user may send requests to."""
    return Deployment.objects.filter(state=State.RUNNING).restrict(user, USE)


def offered_deployments(user: User) -> QuerySet[Deployment]:
    """What the user's model lists show: the running ones and the on-demand ones a request starts."""
    return Deployment.objects.filter(Q(state=State.RUNNING) | STARTABLE_ON_DEMAND).restrict(user, USE)


def on_demand_to_start(user: User, served_model_name: str | None = None) -> dict[str, list[int]]:
    """Served name → ids of the user's on-demand deployments of it that a request would start (or is starting)."""
    deps = Deployment.objects.filter(STARTABLE_ON_DEMAND).restrict(user, USE)
    if served_model_name is not None:
        deps = deps.filter(served_model_name=served_model_name)
    found: dict[str, list[int]] = {}
    for pk, name in deps.order_by("pk").values_list("pk", "served_model_name"):
        found.setdefault(name, []).append(pk)
    return found


def endpoints(user: User, served_model_name: str | None = None) -> list[Endpoint]:
    deps = usable_deployments(user)
    if served_model_name is not None:
        deps = deps.filter(served_model_name=served_model_name)
    instances = (
        Instance.objects.filter(deployment__in=deps, state=State.RUNNING, host_port__isnull=False)
        .exclude(role=Role.RAY_WORKER)
        .select_related("deployment__department")
        .order_by("deployment_id", "replica")
    )
    return [
        Endpoint(
            deployment_id=i.deployment_id,
            instance_id=i.pk,
            served_model_name=i.deployment.served_model_name,
            engine=i.deployment.engine,
            base_url=i.base_url,
            department_id=i.deployment.department_id,
            is_reasoning=is_reasoning(i.deployment.model_slug),
            template=template_cost(i),
            api_key=engine_key(i.deployment_id),
            media_domains=frozenset(i.deployment.department.allowed_media_domains or ()),
        )
        for i in instances
    ]


def model_names(user: User) -> list[str]:
    return sorted(set(offered_deployments(user).values_list("served_model_name", flat=True)))


def is_reasoning(model_slug: str) -> bool:
    from appliance.catalog.catalog import get_model

    try:
        return get_model(model_slug).is_reasoning
    except KeyError:
        return False
