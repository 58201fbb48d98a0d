"""Who may change the catalog and profiles, and whose GPU pool a fit check looks at by default.

Which profiles and custom models a user sees is ``restrict(user, VIEW)``; services enforce these
predicates, and pages ask them to offer only what the services allow.
"""

from __future__ import annotations

from appliance.accounts.models import User


def may_manage_catalog(actor: User) -> bool:
    """Create, edit and archive profiles; add and delete custom models."""
    return actor.is_platform_admin


def fits_own_pool_by_default(actor: User) -> bool:
    """A fit check without a department looks at the actor's department's pool; platform admins and
    auditors, who belong to no department (or oversee them all), at the whole appliance."""
    return bool(actor.department_id) and not actor.is_platform_admin
