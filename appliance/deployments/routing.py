"""Which engines a user may talk to, and where they listen. Used by the gateway and the chat portal.

A user may use the running deployments of their own department and of its parent departments
(a shared model run by the IT department for everyone). Platform admins may use all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from appliance.accounts.models import User
from appliance.deployments.choices import Role, State
from appliance.deployments.models import Deployment, Instance


@dataclass(frozen=True)
class Endpoint:
    deployment_id: int
    instance_id: int
    served_model_name: str
    engine: str
    base_url: str  # e.g. http://127.0.0.1:20000 ; OpenAI routes are under /v1 (Ollama: native under /api)
    department_id: int
    is_reasoning: bool = False


def usable_deployments(user: User) -> QuerySet[Deployment]:
    running = Deployment.objects.filter(state=State.RUNNING)
    if not user.is_active:
        return running.none()
    if user.is_platform_admin:
        return running
    if user.department is None:
        return running.none()
    return running.filter(department_id__in=user.department.lineage_ids())


def endpoints(user: User, served_model_name: str | None = None) -> list[Endpoint]:
    deps = usable_deployments(user)
    if served_model_name is not None:
        deps = deps.filter(served_model_name=served_model_name)
    instances = (
        Instance.objects.filter(deployment__in=deps, state=State.RUNNING, host_port__isnull=False)
        .exclude(role=Role.RAY_WORKER)
        .select_related("deployment")
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
            is_reasoning=_is_reasoning(i.deployment.model_slug),
        )
        for i in instances
    ]


def model_names(user: User) -> list[str]:
    return sorted(set(usable_deployments(user).values_list("served_model_name", flat=True)))


def _is_reasoning(model_slug: str) -> bool:
    from appliance.catalog.catalog import get_model

    try:
        return get_model(model_slug).is_reasoning
    except KeyError:
        return False
