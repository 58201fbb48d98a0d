"""Mapping rules (directory group or OIDC claim → department and role) and the users' external identities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from appliance.accounts.choices import Role
from appliance.core.querysets import RestrictedQuerySet
from appliance.sso.choices import Source

if TYPE_CHECKING:
    from appliance.accounts.models import User


class MappingRuleQuerySet(RestrictedQuerySet["MappingRule"]):
    pass


class MappingRule(models.Model):
    """One line of the sign-in mapping. At each sign-in the rules of the source are tried in ``position``
    order and the first whose value the user carries decides the user's department and role.

    LDAP rules match the DN of a group the user is a member of; OIDC rules match one value of the claim
    named in ``claim`` (a string or a list of strings, e.g. ``groups``). ``*`` matches everyone."""

    source = models.CharField(max_length=8, choices=Source.choices)
    claim = models.CharField(max_length=64, blank=True)
    value = models.CharField(max_length=512)
    department = models.ForeignKey(
        "accounts.Department", null=True, blank=True, on_delete=models.CASCADE, related_name="sign_in_rules"
    )
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.MEMBER)
    position = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MappingRuleQuerySet.as_manager()

    class Meta:
        ordering = ["source", "position", "id"]

    def __str__(self) -> str:
        claim = f"{self.claim}=" if self.claim else ""
        return f"{self.source}: {claim}{self.value} → {self.role}"

    def clean(self) -> None:
        if self.source == Source.OIDC and not self.claim:
            raise ValidationError({"claim": _("An OIDC rule names the claim it matches, e.g. groups.")})
        if self.role in (Role.MEMBER, Role.DEPARTMENT_ADMIN) and self.department_id is None:
            raise ValidationError({"department": _("Members and department admins need a department.")})

    def audit_snapshot(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "claim": self.claim,
            "value": self.value,
            "department": self.department_id,
            "role": self.role,
            "position": self.position,
        }

    # Platform admins manage the rules; auditors read them (the gate's own rule); nobody else sees them.
    @staticmethod
    def restrict_scope(qs: MappingRuleQuerySet, user: User, action: str) -> MappingRuleQuerySet:
        return qs.none()


class ExternalIdentity(models.Model):
    """The console user a directory entry (LDAP DN) or an OIDC subject signs in as.

    ``disabled_by_directory``: the directory, not an admin, deactivated the user (gone, disabled or no
    longer mapped); only then does a later successful directory sign-in activate the user again."""

    user = models.OneToOneField("accounts.User", on_delete=models.CASCADE, related_name="external_identity")
    source = models.CharField(max_length=8, choices=Source.choices)
    subject = models.CharField(max_length=512)
    disabled_by_directory = models.BooleanField(default=False)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "subject"], name="sso_identity_unique_subject")]

    def __str__(self) -> str:
        return f"{self.source}:{self.subject}"
