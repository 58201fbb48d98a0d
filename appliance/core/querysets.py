"""The one permission gate: ``Model.objects.restrict(user, action)``.

Each restricted model implements ``restrict_scope(qs, user, action)`` to narrow a queryset to
what that user may see or change. Platform admins see everything; auditors may view everything
and change nothing but what a model's ``auditor_scope(qs, user, action)`` grants them (their own
API keys). Views, API viewsets, consumers and services all go through here, so a rule
lives in one place. Rules that are not about a queryset (may this user create departments, grant
this role) are ``may_*`` predicates in each app's ``permissions.py``.

``use`` is sending requests to something that serves them (a deployment's model, from the chat
portal or the gateway); a model that can be used answers it in ``restrict_scope`` (and, since
auditors may use what their department may, in ``auditor_scope``).
"""

from __future__ import annotations

from typing import Any, Self, TypeVar

from django.db import models

VIEW, ADD, CHANGE, DELETE, USE = "view", "add", "change", "delete", "use"
ACTIONS = (VIEW, ADD, CHANGE, DELETE, USE)

_M = TypeVar("_M", bound=models.Model)


class RestrictedQuerySet(models.QuerySet[_M]):
    def restrict(self, user: Any, action: str = VIEW) -> Self:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_platform_admin:
            return self
        if user.is_auditor:
            if action == VIEW:
                return self
            own = getattr(self.model, "auditor_scope", None)
            return own(self, user, action) if own is not None else self.none()
        scope = getattr(self.model, "restrict_scope", None)
        if scope is None:
            return self.none()
        return scope(self, user, action)
