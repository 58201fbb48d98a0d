"""Who may manage deployments: the rules that are not a queryset filter.

Which deployments a user sees, changes or sends requests to is ``restrict(user, action)`` (``use`` for
the chat portal and the gateway: see ``Deployment.restrict_scope``); in which departments an admin
creates them is ``User.managed_departments``.
"""

from __future__ import annotations

from appliance.accounts.models import User


def may_manage_deployments(actor: User) -> bool:
    """Create deployments at all (in the departments they manage)."""
    return actor.is_platform_admin or actor.is_department_admin
