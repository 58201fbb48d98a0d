from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    PLATFORM_ADMIN = "platform_admin", _("Platform admin")
    DEPARTMENT_ADMIN = "department_admin", _("Department admin")
    MEMBER = "member", _("Member")
    AUDITOR = "auditor", _("Auditor")


# Who may act on whom: a principal acts on a user only when its rank is higher (platform admins,
# the top rank, also act on each other). Auditors rank with members: they read everything, manage no one.
ROLE_RANK = {Role.PLATFORM_ADMIN: 3, Role.DEPARTMENT_ADMIN: 2, Role.MEMBER: 1, Role.AUDITOR: 1}


def roles_below(role: str) -> list[str]:
    """The roles a holder of ``role`` outranks."""
    rank = ROLE_RANK.get(role, 0)  # type: ignore[call-overload]
    return [str(other) for other, other_rank in ROLE_RANK.items() if other_rank < rank]


class LoginResult(models.TextChoices):
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")
    BLOCKED = "blocked", _("Blocked")


API_KEY_PREFIX = "ak"
API_KEY_PREFIX_LENGTH = 8
