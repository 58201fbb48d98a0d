"""Who sees the admin dashboard, and how much of the chat activity it counts."""

from __future__ import annotations

from django.db.models import QuerySet

from appliance.accounts.choices import Role
from appliance.accounts.models import User
from appliance.chat.models import Message


def may_see_dashboard(user: User) -> bool:
    """Members get the portal's home page instead; every other role, the dashboard."""
    return user.role != Role.MEMBER


def countable_chats(messages: QuerySet[Message], user: User) -> QuerySet[Message]:
    """The chat messages whose number (never their content) ``user`` may see: all of them for platform admins
    and auditors, their subtree's for department admins, none for anyone else."""
    if user.is_platform_admin or user.is_auditor:
        return messages
    if user.is_department_admin and user.department is not None:
        return messages.filter(conversation__user__department__path__startswith=user.department.path)
    return messages.none()
