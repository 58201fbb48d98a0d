"""Custom catalog entries and SKU profiles with their immutable versions.

A profile (基础版, 标准版, 旗舰版 or custom) is an identity: slug, name, tier. What it deploys lives in
a :class:`ProfileVersion`; every change of the spec writes a new version and moves
``Profile.current_version``, and a version is never changed or deleted afterwards, so a deployment
that points at a version keeps running exactly what it was started with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from appliance.catalog.catalog import ModelEntry, validate_entry
from appliance.catalog.choices import DEFAULT_CHAT_DEFAULTS, Engine, Tier
from appliance.core.querysets import VIEW, RestrictedQuerySet

if TYPE_CHECKING:
    from appliance.accounts.models import User

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9._-]{0,63}$", _("Use lower-case letters, digits, '.', '-' and '_'."))


class ImmutableError(Exception):
    """Raised when code tries to change or remove a profile version."""


def _readable_by_everyone(qs: Any, user: User, action: str) -> Any:
    # Everyone signed in reads the catalog and the profiles; only platform admins (who bypass this
    # scope in restrict()) change them.
    return qs if action == VIEW else qs.none()


class CustomModelQuerySet(RestrictedQuerySet["CustomModel"]):
    pass


class CustomModel(models.Model):
    """A catalog entry an admin added; ``spec`` is the entry as ``validate_entry`` accepts it."""

    slug = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    spec = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CustomModelQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def entry(self) -> ModelEntry:
        return validate_entry(self.spec)

    restrict_scope = staticmethod(_readable_by_everyone)


class ProfileQuerySet(RestrictedQuerySet["Profile"]):
    def active(self) -> ProfileQuerySet:
        return self.filter(archived_at__isnull=True)


class Profile(models.Model):
    """A SKU profile; its spec is ``current_version``. Archived profiles are hidden, never deleted."""

    slug = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=128, unique=True)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.CUSTOM)
    description = models.TextField(blank=True)
    builtin = models.BooleanField(default=False, help_text="Seeded with the console.")
    current_version = models.OneToOneField(
        "ProfileVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="current_of"
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProfileQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    restrict_scope = staticmethod(_readable_by_everyone)


# The fields of a version that define what is deployed; a change to any of them makes a new version.
SPEC_FIELDS = (
    "model",
    "engine",
    "precision",
    "kv_dtype",
    "nodes",
    "gpus_per_node",
    "min_gpu_memory_gib",
    "gpu_model",
    "tensor_parallel",
    "pipeline_parallel",
    "max_model_len",
    "gpu_memory_utilization",
    "max_num_seqs",
    "cpu_ram_gib",
    "extra_args",
    "chat_defaults",
    "default_max_tokens",
    "reference_price_cny",
    "concurrency_min",
    "concurrency_max",
    "requests_per_second_min",
    "requests_per_second_max",
)


def default_chat_defaults() -> dict[str, float]:
    return dict(DEFAULT_CHAT_DEFAULTS)


class ProfileVersionQuerySet(RestrictedQuerySet["ProfileVersion"]):
    pass


class ProfileVersion(models.Model):
    """One immutable spec of a profile: what a deployment of it runs, and the vendor's reference figures."""

    profile = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    model = models.CharField(max_length=64, help_text="Catalog slug.")
    engine = models.CharField(max_length=16, choices=Engine.choices)
    precision = models.CharField(max_length=16, default="auto", help_text="Weight dtype, as the planner names it.")
    kv_dtype = models.CharField(max_length=8, default="auto")
    nodes = models.PositiveSmallIntegerField(default=1)
    gpus_per_node = models.PositiveSmallIntegerField()
    min_gpu_memory_gib = models.FloatField(null=True, blank=True)
    gpu_model = models.CharField(max_length=64, blank=True, help_text="Reference GPU, e.g. 'RTX 4090'; blank: any.")
    tensor_parallel = models.PositiveSmallIntegerField(default=1)
    pipeline_parallel = models.PositiveSmallIntegerField(default=1)
    max_model_len = models.PositiveIntegerField()
    gpu_memory_utilization = models.FloatField(default=0.9)
    max_num_seqs = models.PositiveIntegerField(null=True, blank=True)
    cpu_ram_gib = models.FloatField(null=True, blank=True, help_text="Host RAM per node.")
    extra_args = models.JSONField(default=dict, blank=True)
    chat_defaults = models.JSONField(default=default_chat_defaults, blank=True)
    default_max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Answer length in chat when the user sets none (None: half the context)."
    )
    reference_price_cny = models.PositiveIntegerField(null=True, blank=True)
    concurrency_min = models.PositiveIntegerField(null=True, blank=True)
    concurrency_max = models.PositiveIntegerField(null=True, blank=True)
    requests_per_second_min = models.PositiveIntegerField(null=True, blank=True)
    requests_per_second_max = models.PositiveIntegerField(null=True, blank=True)
    note = models.CharField(max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProfileVersionQuerySet.as_manager()

    class Meta:
        ordering = ["profile_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["profile", "number"], name="catalog_version_number_unique"),
            models.CheckConstraint(condition=Q(nodes__gte=1), name="catalog_version_nodes_positive"),
            models.CheckConstraint(
                condition=Q(tensor_parallel__gte=1, pipeline_parallel__gte=1), name="catalog_version_parallel_positive"
            ),
            models.CheckConstraint(
                condition=Q(gpu_memory_utilization__gt=0, gpu_memory_utilization__lte=1),
                name="catalog_version_utilisation_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableError("profile versions are immutable; create a new version")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableError("profile versions are kept for the deployments that use them")

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def spec(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SPEC_FIELDS}

    restrict_scope = staticmethod(_readable_by_everyone)


def audit_snapshot(obj: Any) -> dict[str, Any]:
    """What the audit log records for a profile (with its current spec) or a custom entry."""
    if isinstance(obj, Profile):
        version = obj.current_version
        head: dict[str, Any] = {"slug": obj.slug, "name": obj.name, "tier": obj.tier, "description": obj.description}
        head["archived"] = obj.archived_at is not None
        if version is None:
            return head
        return {**head, "version": version.number, **version.spec()}
    if isinstance(obj, CustomModel):
        return {"slug": obj.slug, "spec": obj.spec}
    raise TypeError(f"no audit snapshot for {type(obj).__name__}")
