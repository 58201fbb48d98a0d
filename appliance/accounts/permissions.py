"""Who may do what with departments, users and API keys: the rules that are not a queryset filter.

Which rows a user may see or change is ``restrict(user, action)`` (``restrict_scope`` on the models);
the predicates here answer the questions a queryset cannot: may this actor create users at all,
grant this role, leave a user outside every department. Services enforce them; views and templates
ask them to offer only what the services allow.
"""

from __future__ import annotations

from django.db.models import QuerySet

from appliance.accounts.choices import Role, roles_below
from appliance.accounts.models import Department, User
from appliance.core.querysets import VIEW

# Roles only a platform admin may grant, or change someone out of: ranks alone would let a
# department admin appoint an auditor, who reads everything.
PLATFORM_ONLY_ROLES = (Role.PLATFORM_ADMIN, Role.AUDITOR)


def may_manage_departments(actor: User) -> bool:
    """Create, rename, move and delete departments."""
    return actor.is_platform_admin


def may_create_users(actor: User) -> bool:
    return actor.is_platform_admin or actor.is_department_admin


def may_place_users_outside_departments(actor: User) -> bool:
    """Create or keep a user in no department (platform admins and auditors usually are)."""
    return actor.is_platform_admin


def may_grant_role(actor: User, role: str) -> bool:
    """Platform admins grant any role; anyone else only roles below their own, never a platform-only one."""
    return actor.is_platform_admin or (role not in PLATFORM_ONLY_ROLES and role in roles_below(actor.role))


def grantable_roles(actor: User) -> list[str]:
    """The roles ``actor`` may give someone (pages offer only these)."""
    return [role for role in Role.values if may_grant_role(actor, role)]


def may_change_role_of(actor: User, user: User) -> bool:
    """Taking a platform-only role away needs a platform admin, as granting it does."""
    return actor.is_platform_admin or user.role not in PLATFORM_ONLY_ROLES


def may_create_api_keys(actor: User) -> bool:
    """Auditors change nothing, keys included (``ApiKey.auditor_scope`` lets them only revoke their own)."""
    return not actor.is_auditor


def may_create_key_for(actor: User, owner: User) -> bool:
    """For someone else (``owner`` within ``restrict(actor, CHANGE)``): department admins, service accounts only."""
    return owner.is_service_account or actor.is_platform_admin


def departments_for(actor: User, action: str = VIEW) -> QuerySet[Department]:
    """The departments ``actor`` may see (VIEW) or place users and things in (any other action)."""
    return actor.managed_departments() if action != VIEW else Department.objects.restrict(actor, VIEW)


def may_see_admin_pages(user: User) -> bool:
    """The console's administration pages (departments, nodes, deployments, …): every role but members,
    who have the portal (chat, their keys and usage, the GPUs)."""
    return user.role != Role.MEMBER


def may_use_portal(user: User) -> bool:
    """The portal's pages: every signed-in user."""
    return user.is_authenticated
