"""Engine images: the engine catalog (which image runs which engine), the images each node's Docker engine
has, and the imports that load tarballs into them.

The tables kept the names they had when these models lived in ``deployments`` (migration 0001 moved
the models without touching the database).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils import timezone

from appliance.core.querysets import VIEW, RestrictedQuerySet
from appliance.images.choices import ImportState

if TYPE_CHECKING:
    from appliance.accounts.models import User


def _node_scope(user: User, action: str, prefix: str = "") -> models.Q | None:
    """Department users see what lies on the nodes that hold their pool's units (Node's own rule)."""
    if action != VIEW or user.department is None:
        return None
    from appliance.gpus.models import Node

    return models.Q(**{f"{prefix}node__in": Node.objects.restrict(user, VIEW).values("pk")})


class EngineImageQuerySet(RestrictedQuerySet["EngineImage"]):
    pass


class EngineImage(models.Model):
    """The engine catalog: which local image tag runs which engine. No row: the settings' default."""

    engine = models.CharField(max_length=16, unique=True)
    image = models.CharField(max_length=255)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EngineImageQuerySet.as_manager()

    class Meta:
        db_table = "deployments_engineimage"

    def __str__(self) -> str:
        return f"{self.engine} → {self.image}"

    @staticmethod
    def restrict_scope(qs: EngineImageQuerySet, user: User, action: str) -> EngineImageQuerySet:
        # Whoever may see deployments may see which image runs them; only platform admins change it.
        return qs if action == VIEW and user.department is not None else qs.none()


class NodeImageQuerySet(RestrictedQuerySet["NodeImage"]):
    pass


class NodeImage(models.Model):
    """An image present on a node's Docker engine, as its worker last reported."""

    node = models.ForeignKey("gpus.Node", on_delete=models.CASCADE, related_name="images")
    tag = models.CharField(max_length=255)
    image_id = models.CharField(max_length=80)
    size_bytes = models.PositiveBigIntegerField(default=0)
    created = models.CharField(max_length=64, blank=True)
    seen_at = models.DateTimeField(default=timezone.now)

    objects = NodeImageQuerySet.as_manager()

    class Meta:
        db_table = "deployments_nodeimage"
        ordering = ["node__name", "tag"]
        constraints = [models.UniqueConstraint(fields=["node", "tag"], name="deployments_node_image_tag")]

    def __str__(self) -> str:
        return f"{self.node_id}:{self.tag}"

    @staticmethod
    def restrict_scope(qs: NodeImageQuerySet, user: User, action: str) -> NodeImageQuerySet:
        scope = _node_scope(user, action)
        return qs.none() if scope is None else qs.filter(scope)


class ImageImportQuerySet(RestrictedQuerySet["ImageImport"]):
    pass


class ImageImport(models.Model):
    """A ``docker load`` of a tarball in the import directory on one node, with its progress.

    ``pending → running → done | failed``; the node's worker claims it with a conditional UPDATE,
    writes ``bytes_read``/``progress`` and ``heartbeat_at`` as it streams, and the reaper fails a
    running import whose heartbeat stopped (its worker died).
    """

    node = models.ForeignKey("gpus.Node", on_delete=models.CASCADE, related_name="+")
    path = models.CharField(max_length=512)
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=ImportState.choices, default=ImportState.PENDING, db_index=True)
    bytes_read = models.PositiveBigIntegerField(default=0)
    progress = models.PositiveSmallIntegerField(default=0)
    loaded_tags = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ImageImportQuerySet.as_manager()

    class Meta:
        db_table = "deployments_imageimport"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import {self.pk} on {self.node_id}"

    @staticmethod
    def restrict_scope(qs: ImageImportQuerySet, user: User, action: str) -> ImageImportQuerySet:
        scope = _node_scope(user, action)
        return qs.none() if scope is None else qs.filter(scope)
