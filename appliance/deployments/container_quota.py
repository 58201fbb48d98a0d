"""The per-department limit on engine containers, which CPU-only deployments count against too.

GPU deployments are bounded by their department's pool of units; a CPU-only profile takes no unit,
so without this limit a department admin could fill every node with ``replicas: 16`` repeated.
Each department of the deployment's lineage has a limit (its ``GpuQuota.max_containers``, else
``APPLIANCE_DEFAULT_MAX_CONTAINERS``; 0 there means none) on the containers of its whole subtree,
so creating child departments does not multiply the allowance. A Ray worker is a container too.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _

from appliance.accounts.models import Department
from appliance.core.exceptions import QuotaExceeded
from appliance.deployments.choices import ACTIVE_STATES, State
from appliance.deployments.models import Deployment, Instance
from appliance.gpus.models import GpuQuota

# A stopping container still runs until its worker removed it.
COUNTED_STATES = frozenset({*ACTIVE_STATES, State.STOPPING})


def containers_in_use(department: Department, *, excluding: int | None = None) -> int:
    """Containers of the deployments of ``department``'s subtree that exist or are about to."""
    found = Instance.objects.filter(deployment__department__path__startswith=department.path, state__in=COUNTED_STATES)
    return (found.exclude(deployment_id=excluding) if excluding is not None else found).count()


def limit_for(department: Department) -> int | None:
    quota = GpuQuota.objects.filter(department=department).only("max_containers").first()
    if quota is not None and quota.max_containers is not None:
        return quota.max_containers
    return settings.APPLIANCE_DEFAULT_MAX_CONTAINERS or None


def check(dep: Deployment, adding: int) -> None:
    """Refuse ``adding`` more containers for ``dep`` when a department of its lineage would exceed its limit.

    The lineage's department rows are locked first (root first, the same order for every caller), so
    two placements in one subtree queue here instead of both seeing the last free container.
    """
    lineage = list(Department.objects.select_for_update().filter(pk__in=dep.department.lineage_ids()).order_by("path"))
    for dept in lineage:
        limit = limit_for(dept)
        if limit is None:
            continue
        in_use = containers_in_use(dept, excluding=dep.pk)
        if in_use + adding > limit:
            values = {"name": dept.name, "max_containers": limit, "in_use": in_use, "adding": adding}
            message = _(
                "Department %(name)s may run %(max_containers)s engine containers (CPU-only included); "
                "%(in_use)s are in use and this deployment needs %(adding)s more."
            )
            raise QuotaExceeded(message % values, details={**values, "limit": "max_containers"})
