"""Sign-in mapping rules and directory users. Each operation owns its transaction and audits inside it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from appliance.accounts.choices import Role
from appliance.accounts.models import Department, User, audit_snapshot
from appliance.audit import services as audit
from appliance.core.exceptions import InvalidInput, NotFound, PermissionDenied
from appliance.sso.choices import Source
from appliance.sso.mapping import first_match
from appliance.sso.models import ExternalIdentity, MappingRule
from appliance.sso.permissions import may_manage_sign_in_rules

RULE_FIELDS = ("source", "claim", "value", "department_id", "role", "position")

# --- mapping rules -------------------------------------------------------------------------


def _require_platform_admin(actor: User) -> None:
    if not may_manage_sign_in_rules(actor):
        raise PermissionDenied(_("Only platform admins manage sign-in rules."))


def _validated(rule: MappingRule) -> MappingRule:
    if rule.role not in Role.values:
        raise InvalidInput(_("Unknown role."), code="invalid_role")
    if rule.department_id is not None and not Department.objects.filter(pk=rule.department_id).exists():
        raise InvalidInput(_("The department does not exist."), code="invalid_department")
    rule.value, rule.claim = rule.value.strip(), rule.claim.strip()
    if not rule.value:
        raise InvalidInput(_("A rule needs a value to match."), code="invalid")
    try:
        rule.clean()
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), code="invalid", details=exc.message_dict) from None
    return rule


@transaction.atomic
def create_rule(actor: User, **fields: Any) -> MappingRule:
    _require_platform_admin(actor)
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}", code="unknown_field")
    if fields.get("position") is None:
        last = MappingRule.objects.filter(source=fields.get("source")).order_by("-position").first()
        fields["position"] = (last.position + 1) if last is not None else 0
    if fields.get("source") not in Source.values:
        raise InvalidInput(_("Unknown source."), code="invalid_source")
    rule = _validated(MappingRule(**fields))
    rule.save()
    audit.record("sso.rule.create", actor=actor, target=rule, after=rule.audit_snapshot())
    return rule


def _lock(rule_id: int) -> MappingRule:
    rule = MappingRule.objects.select_for_update().filter(pk=rule_id).first()
    if rule is None:
        raise NotFound(_("Sign-in rule not found."))
    return rule


@transaction.atomic
def update_rule(actor: User, rule_id: int, **changes: Any) -> MappingRule:
    _require_platform_admin(actor)
    rule = _lock(rule_id)
    before = rule.audit_snapshot()
    for name in RULE_FIELDS:
        if name in changes:
            setattr(rule, name, changes.pop(name))
    if changes:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(changes))}", code="unknown_field")
    if rule.source not in Source.values:
        raise InvalidInput(_("Unknown source."), code="invalid_source")
    _validated(rule).save()
    audit.record("sso.rule.update", actor=actor, target=rule, before=before, after=rule.audit_snapshot())
    return rule


@transaction.atomic
def delete_rule(actor: User, rule_id: int) -> None:
    _require_platform_admin(actor)
    rule = _lock(rule_id)
    audit.record("sso.rule.delete", actor=actor, target=rule, before=rule.audit_snapshot())
    rule.delete()


@transaction.atomic
def move_rule(actor: User, rule_id: int, step: int) -> MappingRule:
    """Swap a rule with its neighbour above (step -1) or below (+1) among the rules of its source."""
    _require_platform_admin(actor)
    rule = _lock(rule_id)
    siblings = list(MappingRule.objects.select_for_update().filter(source=rule.source))
    index = next(i for i, other in enumerate(siblings) if other.pk == rule.pk)
    if not 0 <= index + step < len(siblings):
        return rule
    siblings[index], siblings[index + step] = siblings[index + step], siblings[index]
    before = rule.audit_snapshot()
    for position, other in enumerate(siblings):
        if other.position != position:
            MappingRule.objects.filter(pk=other.pk).update(position=position)
    rule.refresh_from_db()
    audit.record("sso.rule.update", actor=actor, target=rule, before=before, after=rule.audit_snapshot())
    return rule


# --- directory users ----------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What a directory or an identity provider says about a user signing in."""

    source: str
    subject: str  # LDAP: the entry's DN; OIDC: the ``sub`` claim
    username: str
    display_name: str
    email: str
    claims: Mapping[str, Any]
    signing_in: bool = True  # False: the directory sync refreshes the user


class SignInRefused(Exception):
    """The directory knows the user, but the console does not let them in: ``code`` for the audit log,
    the message (in the user's language) for the sign-in page."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _find_user(profile: Profile) -> tuple[User | None, ExternalIdentity | None]:
    identity = (
        ExternalIdentity.objects.select_for_update()
        .select_related("user")
        .filter(source=profile.source, subject=profile.subject)
        .first()
    )
    if identity is not None:
        return identity.user, identity
    existing = User.objects.filter(username__iexact=profile.username).first()
    moved = ExternalIdentity.objects.filter(user=existing, source=Source.LDAP).first() if existing else None
    if moved is not None and profile.source == Source.LDAP:
        # Moved to another OU: a directory username is unique, so the new DN is the same person.
        return existing, moved
    if existing is not None:
        # Never take over an account the directory did not create: the break-glass admin stays local.
        raise SignInRefused("local_account", _("A console account of this name exists already; ask an administrator."))
    return None, None


def provision(profile: Profile) -> User:
    """Create or update the console user of a directory sign-in, by the mapping rules.

    Raises SignInRefused when no rule maps the user (a user it mapped before is deactivated), the name
    belongs to a local account, or an admin deactivated the user in the console."""
    rule = first_match(MappingRule.objects.all(), profile.source, profile.claims)
    if rule is None:
        known = ExternalIdentity.objects.filter(source=profile.source, subject=profile.subject).first()
        if known is not None:
            deactivate_identity(known.pk, "unmapped")
        raise SignInRefused("unmapped", _("No sign-in rule maps your account to a department; ask an administrator."))
    return _apply(profile, rule)


@transaction.atomic
def _apply(profile: Profile, rule: MappingRule) -> User:
    user, identity = _find_user(profile)
    if user is not None and identity is not None and not user.is_active and not identity.disabled_by_directory:
        raise SignInRefused("disabled", _("Your console account is disabled."))
    before = audit_snapshot(user) if user is not None else None
    if user is None:
        user = User(username=profile.username[:150])
        user.set_unusable_password()
    user.display_name = profile.display_name[:128]
    user.email = profile.email[:254]
    user.department_id, user.role, user.is_active = rule.department_id, rule.role, True
    user.is_staff = user.is_superuser = False
    user.save()
    now = timezone.now()
    identity = identity or ExternalIdentity(user=user, source=profile.source)
    identity.subject, identity.disabled_by_directory, identity.last_synced_at = profile.subject, False, now
    if profile.signing_in:
        identity.last_sign_in_at = now
    identity.save()
    after = audit_snapshot(user)
    if before is None:
        audit.record("user.create", actor=None, target=user, after={**after, "source": profile.source})
    elif before != after:
        audit.record("user.update", actor=None, target=user, before=before, after={**after, "source": profile.source})
    return user


def _deactivate(identity: ExternalIdentity, reason: str) -> None:
    user = identity.user
    identity.last_synced_at = timezone.now()
    if not user.is_active:
        identity.save(update_fields=["last_synced_at"])
        return
    before = audit_snapshot(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    identity.disabled_by_directory = True
    identity.save(update_fields=["disabled_by_directory", "last_synced_at"])
    after = {**audit_snapshot(user), "source": identity.source, "reason": reason}
    audit.record("user.disable", actor=None, target=user, before=before, after=after)


@transaction.atomic
def deactivate_identity(identity_id: int, reason: str) -> None:
    """The directory no longer has the user (``gone``), or no rule maps them any more (``unmapped``)."""
    identity = ExternalIdentity.objects.select_for_update().select_related("user").filter(pk=identity_id).first()
    if identity is not None:
        _deactivate(identity, reason)
