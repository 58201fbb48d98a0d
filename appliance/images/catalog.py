"""The engine catalog (engine → image tag) and the images each node reports it has."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.core.exceptions import Conflict
from appliance.engines import registry
from appliance.gpus.models import Node
from appliance.images.models import EngineImage, NodeImage


def default_image(engine: str) -> str:
    """The engine's image unless the catalog names another: APPLIANCE_IMAGE_<ENGINE>, else the engine's own
    default (the tag its specs were checked against); empty for an unknown engine."""
    return settings.APPLIANCE_ENGINE_IMAGES.get(engine) or registry.default_image(engine)


def image_for(engine: str) -> str:
    row = EngineImage.objects.filter(engine=engine).first()
    if row is not None:
        return row.image
    default = default_image(engine)
    if not default:
        raise Conflict(f"No image is configured for engine {engine}.", code="no_engine_image")
    return default


def require_image_on(node: Node, image: str) -> None:
    if NodeImage.objects.filter(node=node, tag=image).exists():
        return
    raise Conflict(
        f"Image {image} is not on node {node.name}. Import it first: Images → Import on that node, or on the node "
        f"run `docker load -i <file>.tar` (an offline appliance cannot pull from a registry).",
        code="image_missing",
    )


@transaction.atomic
def record_node_images(node: Node, rows: list[dict[str, object]]) -> None:
    """Replace the node's image list with what its Docker engine reported just now."""
    now = timezone.now()
    seen = set()
    for row in rows:
        tag = str(row["tag"])
        seen.add(tag)
        NodeImage.objects.update_or_create(
            node=node,
            tag=tag,
            defaults={
                "image_id": row["image_id"],
                "size_bytes": row["size_bytes"],
                "created": row["created"],
                "seen_at": now,
            },
        )
    NodeImage.objects.filter(node=node).exclude(tag__in=seen).delete()
