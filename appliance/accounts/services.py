"""Account operations. Each owns its transaction and writes its audit record inside it."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from appliance.accounts.choices import API_KEY_PREFIX, API_KEY_PREFIX_LENGTH, Role
from appliance.accounts.models import ApiKey, Department, User, audit_snapshot
from appliance.accounts.permissions import (
    PLATFORM_ONLY_ROLES,
    departments_for,
    may_change_role_of,
    may_create_key_for,
    may_create_users,
    may_grant_role,
    may_manage_departments,
    may_place_users_outside_departments,
)
from appliance.audit import services as audit
from appliance.core.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied
from appliance.core.querysets import ADD, CHANGE, VIEW

# --- departments -------------------------------------------------------------------------


def _require_department_manager(actor: User) -> None:
    if not may_manage_departments(actor):
        raise PermissionDenied("Only platform admins may do this.")


def _visible_department(actor: User, department_id: int | None, action: str = VIEW) -> Department | None:
    if department_id is None:
        return None
    dept = departments_for(actor, action).filter(pk=department_id).first()
    if dept is None:
        raise InvalidInput(f"Department {department_id} does not exist or is not yours.", code="invalid_department")
    return dept


def _compute_path(dept: Department) -> str:
    parent_path = dept.parent.path if dept.parent is not None else "/"
    return f"{parent_path}{dept.pk}/"


@transaction.atomic
def create_department(
    actor: User, *, code: str, name: str, parent_id: int | None = None, allowed_media_domains: list[str] | None = None
) -> Department:
    _require_department_manager(actor)
    parent = _visible_department(actor, parent_id)
    media = list(allowed_media_domains or [])
    try:
        with transaction.atomic():
            dept = Department.objects.create(code=code, name=name, parent=parent, allowed_media_domains=media)
    except IntegrityError:
        raise Conflict(f"A department with code {code!r} or name {name!r} already exists.", code="duplicate") from None
    dept.path = _compute_path(dept)
    dept.save(update_fields=["path"])
    audit.record("department.create", actor=actor, target=dept, after=audit_snapshot(dept))
    return dept


@transaction.atomic
def update_department(actor: User, dept_id: int, **changes: Any) -> Department:
    _require_department_manager(actor)
    dept = Department.objects.select_for_update().filter(pk=dept_id).first()
    if dept is None:
        raise NotFound("Department not found.")
    before = audit_snapshot(dept)
    if "parent_id" in changes:
        parent = _visible_department(actor, changes.pop("parent_id"))
        if parent is not None and parent.path.startswith(dept.path):
            raise InvalidInput("A department cannot be moved under itself.", code="invalid_parent")
        dept.parent = parent
    for field in ("code", "name", "allowed_media_domains"):
        if field in changes:
            setattr(dept, field, changes.pop(field))
    if changes:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(changes))}", code="unknown_field")
    old_path = dept.path
    try:
        with transaction.atomic():
            dept.save()
    except IntegrityError:
        raise Conflict("Another department already has that code or name.", code="duplicate") from None
    _move_subtree(dept, old_path)
    audit.record("department.update", actor=actor, target=dept, before=before, after=audit_snapshot(dept))
    return dept


def _move_subtree(dept: Department, old_path: str) -> None:
    new_path = _compute_path(dept)
    if new_path == old_path:
        return
    for node in Department.objects.select_for_update().filter(path__startswith=old_path):
        node.path = new_path + node.path[len(old_path) :]
        node.save(update_fields=["path"])


@transaction.atomic
def delete_department(actor: User, dept_id: int) -> None:
    _require_department_manager(actor)
    dept = Department.objects.select_for_update().filter(pk=dept_id).first()
    if dept is None:
        raise NotFound("Department not found.")
    holds_gpus = Department.objects.filter(pk=dept.pk, gpu_units__isnull=False).exists()
    if dept.children.exists() or dept.users.exists() or holds_gpus:
        raise Conflict("The department still has sub-departments, users or GPU units.", code="department_in_use")
    before = audit_snapshot(dept)
    audit.record("department.delete", actor=actor, target=dept, before=before, department_id=dept.parent_id)
    dept.delete()


# --- users -------------------------------------------------------------------------------


def _check_role_grant(actor: User, role: str) -> None:
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.", code="invalid_role")
    if may_grant_role(actor, role):
        return
    if role in PLATFORM_ONLY_ROLES:
        raise PermissionDenied("Only platform admins may grant this role.")
    raise PermissionDenied(_("You may only grant roles below your own."))


def _check_password(password: str, user: User | None = None) -> None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages), code="weak_password", details={"password": exc.messages}) from None


@transaction.atomic
def create_user(
    actor: User,
    *,
    username: str,
    department_id: int | None,
    role: str = Role.MEMBER,
    password: str | None = None,
    display_name: str = "",
    email: str = "",
    is_service_account: bool = False,
) -> User:
    if not may_create_users(actor):
        raise PermissionDenied("You may not create users.")
    _check_role_grant(actor, role)
    dept = _visible_department(actor, department_id, ADD)
    if dept is None and not may_place_users_outside_departments(actor):
        raise InvalidInput("A department is required.", code="invalid_department")
    user = User(
        username=username,
        department=dept,
        role=role,
        display_name=display_name,
        email=email,
        is_service_account=is_service_account,
    )
    if password and not is_service_account:
        _check_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise Conflict(f"A user named {username!r} already exists.", code="duplicate") from None
    audit.record("user.create", actor=actor, target=user, after=audit_snapshot(user))
    return user


def _lock_user(actor: User, user_id: int) -> User:
    user = User.objects.restrict(actor, CHANGE).select_for_update().filter(pk=user_id).first()
    if user is None:
        if User.objects.restrict(actor, VIEW).filter(pk=user_id).exists():
            raise PermissionDenied(_("You may only manage users whose role is below yours."))
        raise NotFound("User not found.")
    return user


def _guard_last_platform_admin(user: User, new_role: str, new_active: bool) -> None:
    if user.role != Role.PLATFORM_ADMIN or (new_role == Role.PLATFORM_ADMIN and new_active):
        return
    # Lock every active platform admin so two admins demoting each other at once cannot both win.
    admins = list(
        User.objects.select_for_update().filter(role=Role.PLATFORM_ADMIN, is_active=True).values_list("pk", flat=True)
    )
    if admins == [user.pk]:
        raise Conflict("This is the last active platform admin; appoint another one first.", code="last_platform_admin")


@transaction.atomic
def update_user(actor: User, user_id: int, **changes: Any) -> User:
    user = _lock_user(actor, user_id)
    before = audit_snapshot(user)
    role = changes.pop("role", user.role)
    if role != user.role:
        _check_role_grant(actor, role)
        if not may_change_role_of(actor, user):
            raise PermissionDenied("Only platform admins may do this.")
    is_active = changes.pop("is_active", user.is_active)
    _guard_last_platform_admin(user, role, is_active)
    if "department_id" in changes:
        user.department = _visible_department(actor, changes.pop("department_id"), ADD)
    for field in ("display_name", "email"):
        if field in changes:
            setattr(user, field, changes.pop(field))
    if changes:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(changes))}", code="unknown_field")
    user.role, user.is_active = role, is_active
    if role != Role.PLATFORM_ADMIN:
        # Flags a former platform admin may carry (earlier bootstrap) must not outlive the role.
        user.is_staff = user.is_superuser = False
    user.save()
    action = "user.disable" if before["is_active"] and not is_active else "user.update"
    audit.record(action, actor=actor, target=user, before=before, after=audit_snapshot(user))
    return user


@transaction.atomic
def set_password(actor: User, user_id: int, new_password: str, *, old_password: str | None = None) -> None:
    user = _lock_user(actor, user_id) if user_id != actor.pk else User.objects.select_for_update().get(pk=actor.pk)
    if user.pk == actor.pk and not user.check_password(old_password or ""):
        raise InvalidInput("The current password is wrong.", code="wrong_password")
    if user.is_service_account:
        raise InvalidInput("Service accounts have no password; use API keys.", code="service_account")
    _check_password(new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    audit.record("user.password_change", actor=actor, target=user, after={"password": "changed"})


@transaction.atomic
def create_platform_admin(username: str, password: str | None) -> tuple[User, str | None]:
    """Bootstrap the first admin (management command); returns the generated password, if any."""
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    # Not a Django superuser: the console's rights come from the role, and the Django admin (off by
    # default) admits platform admins by role too, so a superuser flag would only be a spare key.
    user = User(username=username, role=Role.PLATFORM_ADMIN)
    _check_password(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        raise Conflict(f"A user named {username!r} already exists.", code="duplicate") from None
    audit.record("user.create", actor=None, target=user, after=audit_snapshot(user))
    return user, generated


# --- API keys ----------------------------------------------------------------------------


def _new_secret() -> tuple[str, str]:
    prefix = secrets.token_hex(API_KEY_PREFIX_LENGTH // 2)
    return prefix, f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


@transaction.atomic
def create_api_key(
    actor: User,
    *,
    name: str,
    user_id: int | None = None,
    expires_at: datetime | None = None,
    can_create_keys: bool = False,
    via_key: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned once and never stored.

    ``via_key`` is the key the request was authenticated with, if any: it needs the key-creation
    scope, and the new key expires no later than it and is revoked with it.
    """
    owner = actor if user_id in (None, actor.pk) else _key_owner_for(actor, user_id)  # type: ignore[arg-type]
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.", code="invalid_expiry")
    if via_key is not None:
        expires_at = _child_expiry(via_key, expires_at)
        if can_create_keys and not via_key.can_create_keys:
            raise PermissionDenied(_("This API key may not create keys."))
    prefix, plaintext = _new_secret()
    key = ApiKey.objects.create(
        user=owner,
        name=name,
        prefix=prefix,
        hashed_key=ApiKey.hash(plaintext),
        created_by=actor,
        expires_at=expires_at,
        parent=via_key,
        can_create_keys=can_create_keys,
    )
    audit.record(
        "api_key.create", actor=actor, target=key, department_id=owner.department_id, after=audit_snapshot(key)
    )
    return key, plaintext


def _child_expiry(parent: ApiKey, requested: datetime | None) -> datetime | None:
    if not parent.can_create_keys:
        raise PermissionDenied(_("This API key may not create keys; create one in the console or with a key that may."))
    if parent.expires_at is None:
        return requested
    if requested is None:
        return parent.expires_at
    if requested > parent.expires_at:
        message = _("A key created by a key expires no later than it (%(expires)s).")
        raise InvalidInput(message % {"expires": parent.expires_at.isoformat()}, code="invalid_expiry")
    return requested


def _key_owner_for(actor: User, user_id: int) -> User:
    owner = User.objects.restrict(actor, CHANGE).filter(pk=user_id).first()
    if owner is None:
        raise InvalidInput("That user does not exist or is not yours.", code="invalid_user")
    if not may_create_key_for(actor, owner):
        raise PermissionDenied("Department admins create keys for service accounts only.")
    return owner


@transaction.atomic
def revoke_api_key(actor: User, key_id: int) -> ApiKey:
    """Revoke a key and every key created through it (the gate is checked on the key asked for)."""
    key = ApiKey.objects.restrict(actor, CHANGE).select_for_update().filter(pk=key_id).first()
    if key is None:
        raise NotFound("API key not found.")
    if key.revoked_at is not None:
        raise Conflict("The key is already revoked.", code="already_revoked")
    now = timezone.now()
    pending = [key]
    while pending:
        current = pending.pop()
        _revoke_one(actor, current, now)
        pending.extend(ApiKey.objects.select_for_update().filter(parent=current, revoked_at__isnull=True))
    return key


def _revoke_one(actor: User, key: ApiKey, now: datetime) -> None:
    before = audit_snapshot(key)
    key.revoked_at = now
    key.save(update_fields=["revoked_at"])
    audit.record(
        "api_key.revoke",
        actor=actor,
        target=key,
        department_id=key.user.department_id,
        before=before,
        after=audit_snapshot(key),
    )


def authenticate_key(plaintext: str) -> ApiKey | None:
    key = (
        ApiKey.objects.usable()
        .select_related("user", "user__department")
        .filter(hashed_key=ApiKey.hash(plaintext))
        .first()
    )
    if key is None:
        return None
    now = timezone.now()
    stale = now - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if key.last_used_at is None or key.last_used_at < stale:
        # One write a minute at most per key: usage bookkeeping must not cost a write per request.
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key
