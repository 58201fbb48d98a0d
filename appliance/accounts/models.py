from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from appliance.accounts.choices import LoginResult, Role, roles_below
from appliance.core.querysets import ADD, CHANGE, VIEW, RestrictedQuerySet

code_validator = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", _("Use letters, digits, '-' and '_'."))


class DepartmentQuerySet(RestrictedQuerySet["Department"]):
    def subtree_of(self, department: Department) -> DepartmentQuerySet:
        return self.filter(path__startswith=department.path)


class Department(models.Model):
    """A department (部门). ``path`` holds the ids from the root so a subtree is one prefix query."""

    code = models.CharField(max_length=64, unique=True, validators=[code_validator])
    name = models.CharField(max_length=128, unique=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    path = models.CharField(max_length=255, editable=False, db_index=True, default="")
    # Hosts the department's engines may fetch `image_url`s from (exact names); empty: none at all.
    # The gateway refuses other URLs and vLLM is started with them as --allowed-media-domains.
    allowed_media_domains = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DepartmentQuerySet.as_manager()

    class Meta:
        ordering = ["path"]

    def __str__(self) -> str:
        return self.name

    def lineage_ids(self) -> list[int]:
        """This department and its ancestors, root first: its path holds their ids."""
        return [int(part) for part in self.path.strip("/").split("/") if part]

    @staticmethod
    def restrict_scope(qs: DepartmentQuerySet, user: User, action: str) -> DepartmentQuerySet:
        if user.department_id is None:
            return qs.none()
        if user.role == Role.DEPARTMENT_ADMIN and action == VIEW:
            return qs.subtree_of(user.department)  # type: ignore[arg-type]
        if action == VIEW:
            return qs.filter(pk=user.department_id)
        # Only platform admins create, rename or move departments.
        return qs.none()


class UserQuerySet(RestrictedQuerySet["User"]):
    pass


class ConsoleUserManager(UserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    pass


class User(AbstractUser):
    """A console user; service accounts have no password and act only through API keys."""

    department = models.ForeignKey(Department, null=True, blank=True, on_delete=models.PROTECT, related_name="users")
    role = models.CharField(max_length=32, choices=Role.choices, default=Role.MEMBER)
    display_name = models.CharField(max_length=128, blank=True)
    is_service_account = models.BooleanField(default=False)

    objects: ClassVar[ConsoleUserManager] = ConsoleUserManager()

    class Meta:
        ordering = ["username"]

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.PLATFORM_ADMIN

    @property
    def is_auditor(self) -> bool:
        return self.role == Role.AUDITOR

    @property
    def is_department_admin(self) -> bool:
        return self.role == Role.DEPARTMENT_ADMIN

    def managed_departments(self) -> DepartmentQuerySet:
        if self.is_platform_admin:
            return Department.objects.all()
        if self.is_department_admin and self.department is not None:
            return Department.objects.subtree_of(self.department)
        return Department.objects.none()

    def outranks(self, other: User) -> bool:
        """Whether this user's role is above ``other``'s, as managing them requires (editing, activating,
        resetting a password, minting a key); where they may do it (the subtree) is the gate's part."""
        return self.is_platform_admin or other.role in roles_below(self.role)

    @staticmethod
    def restrict_scope(qs: UserQuerySet, user: User, action: str) -> UserQuerySet:
        if user.is_department_admin and user.department is not None:
            subtree = qs.filter(department__path__startswith=user.department.path)
            # A department admin sees the whole subtree but changes only those it outranks: never a
            # platform admin placed in the department, a fellow department admin, or itself.
            return subtree if action == VIEW else subtree.filter(role__in=roles_below(user.role))
        if action == VIEW:
            return qs.filter(pk=user.pk)
        return qs.none()


class ApiKeyQuerySet(RestrictedQuerySet["ApiKey"]):
    def usable(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True, user__is_active=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """An integration key. Only a SHA-256 of the secret is stored; the prefix identifies it in lists."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=128)
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    # The key that created this one, when a key did: this one never outlives it and is revoked with it.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    # The one scope a key may hold beyond its user's rights: creating further keys.
    can_create_keys = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(secret: str) -> str:
        # Keys carry 256 bits of randomness, so a fast hash is enough: no dictionary attack applies.
        return hashlib.sha256(secret.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()

    @staticmethod
    def restrict_scope(qs: ApiKeyQuerySet, user: User, action: str) -> ApiKeyQuerySet:
        if user.is_department_admin and user.department is not None:
            subtree = Q(user__department__path__startswith=user.department.path)
            if action == VIEW:
                return qs.filter(subtree)
            return qs.filter(Q(user=user) | (subtree & Q(user__role__in=roles_below(user.role))))
        if action in (VIEW, ADD, CHANGE):
            return qs.filter(user=user)
        return qs.none()

    @staticmethod
    def auditor_scope(qs: ApiKeyQuerySet, user: User, action: str) -> ApiKeyQuerySet:
        # Auditors change nothing else, but a leaked key of their own must be revocable by them.
        return qs.filter(user=user) if action == CHANGE else qs.none()


class LoginAttempt(models.Model):
    """One login try, kept to throttle guessing by username and by client address."""

    username = models.CharField(max_length=150, db_index=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    result = models.CharField(max_length=16, choices=LoginResult.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.username}@{self.source_ip} {self.result}"


def audit_snapshot(obj: Any) -> dict[str, Any]:
    """The fields of an account object that the audit log records (never secrets)."""
    if isinstance(obj, User):
        return {
            "username": obj.username,
            "display_name": obj.display_name,
            "email": obj.email,
            "role": obj.role,
            "department": obj.department_id,
            "is_active": obj.is_active,
            "is_service_account": obj.is_service_account,
        }
    if isinstance(obj, Department):
        return {
            "code": obj.code,
            "name": obj.name,
            "parent": obj.parent_id,
            "allowed_media_domains": list(obj.allowed_media_domains),
        }
    if isinstance(obj, ApiKey):
        return {
            "name": obj.name,
            "prefix": obj.prefix,
            "user": obj.user_id,
            "parent": obj.parent_id,
            "can_create_keys": obj.can_create_keys,
            "expires_at": obj.expires_at.isoformat() if obj.expires_at else None,
            "revoked_at": obj.revoked_at.isoformat() if obj.revoked_at else None,
        }
    raise TypeError(f"no audit snapshot for {type(obj).__name__}")


def acting_user(request: Any) -> User:
    """The authenticated console user behind a request (views run behind login/IsAuthenticated)."""
    user = request.user
    if not isinstance(user, User):
        from appliance.core.exceptions import PermissionDenied

        raise PermissionDenied("Authentication required.")
    return user
