"""Images on an offline appliance, as people ask for them: the engine catalog and image imports.

No node can pull from a registry, so engine images arrive as ``docker save`` tarballs: uploaded through
the console (stored in ``APPLIANCE_IMAGE_IMPORT_DIR/uploads``) or copied into that directory by hand,
then loaded on each target node by its worker (:mod:`appliance.images.loader`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.db import IntegrityError, transaction

from appliance.accounts.models import User
from appliance.audit import services as audit
from appliance.core.exceptions import Conflict, InvalidInput, NotFound, PermissionDenied
from appliance.core.querysets import VIEW
from appliance.core.tasks import queue_on_commit
from appliance.engines import ENGINES
from appliance.gpus.choices import NodeState, node_queue
from appliance.gpus.models import Node
from appliance.images import loader as image_loader
from appliance.images.catalog import default_image
from appliance.images.choices import IMPORT_ACTIVE_STATES
from appliance.images.models import EngineImage, ImageImport, NodeImage
from appliance.images.permissions import may_manage_images
from appliance.images.references import InvalidReference, normalize_reference
from appliance.images.tasks import import_image
from appliance.images.uploads import ReceivedTarball, safe_name, uploads_dir


def _invalid(field_name: str, message: str, code: str = "invalid") -> InvalidInput:
    """A 400 that names the field, like the serializers' errors."""
    return InvalidInput(f"{field_name}: {message}", code=code, details={field_name: [message]})


def require_image_admin(actor: User) -> None:
    if not may_manage_images(actor):
        raise PermissionDenied("Only platform admins import images and change the engine catalog.")


# --- The engine catalog ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    """One engine's image: the catalog's row, or the settings' default when it has none."""

    engine: str
    image: str
    default_image: str
    customized: bool
    updated_at: datetime | None
    present_on: list[str] = field(default_factory=list)
    missing_on: list[str] = field(default_factory=list)


def may_view_catalog(user: User) -> bool:
    """The gate's own answer for EngineImage, which also holds for engines that have no row yet."""
    return not EngineImage.objects.restrict(user, VIEW).query.is_empty()


def catalog(user: User, engines: tuple[str, ...] = ENGINES) -> list[CatalogEntry]:
    """Each engine's image and the visible nodes that have it or lack it; three queries whatever the size."""
    if not may_view_catalog(user):
        raise PermissionDenied("You may not see the engine catalog.")
    rows = {row.engine: row for row in EngineImage.objects.filter(engine__in=engines)}
    images = {e: rows[e].image if e in rows else default_image(e) for e in engines}
    nodes = dict(Node.objects.restrict(user, VIEW).order_by("name").values_list("pk", "name"))
    have = set(
        NodeImage.objects.filter(node_id__in=list(nodes), tag__in=set(images.values())).values_list("node_id", "tag")
    )
    return [
        CatalogEntry(
            engine=e,
            image=images[e],
            default_image=default_image(e),
            customized=e in rows,
            updated_at=rows[e].updated_at if e in rows else None,
            present_on=[name for pk, name in nodes.items() if (pk, images[e]) in have],
            missing_on=[name for pk, name in nodes.items() if (pk, images[e]) not in have],
        )
        for e in engines
    ]


def catalog_entry(user: User, engine: str) -> CatalogEntry:
    if engine not in ENGINES:
        raise NotFound(f"No engine {engine!r}; engines are {', '.join(ENGINES)}.")
    return catalog(user, (engine,))[0]


def _checked_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise _invalid("engine", f"must be one of {', '.join(ENGINES)}")
    return engine


@transaction.atomic
def set_engine_image(actor: User, engine: str, image: str) -> EngineImage:
    """Map ``engine`` to the image tag ``image`` (normalized); deployments created from now on use it."""
    require_image_admin(actor)
    _checked_engine(engine)
    try:
        tag = normalize_reference(image)
    except InvalidReference as exc:
        raise _invalid("image", str(exc)) from None
    row = EngineImage.objects.select_for_update().filter(engine=engine).first()
    before = {"engine": engine, "image": row.image if row else default_image(engine)}
    if row is None:
        try:
            with transaction.atomic():
                row = EngineImage.objects.create(engine=engine, image=tag)
        except IntegrityError:  # another admin created it a moment ago: take the lock and change it
            row = EngineImage.objects.select_for_update().get(engine=engine)
    row.image = tag
    row.save(update_fields=["image", "updated_at"])
    audit.record("engine_image.change", actor=actor, target=row, before=before, after={"engine": engine, "image": tag})
    return row


@transaction.atomic
def reset_engine_image(actor: User, engine: str) -> None:
    """Forget the catalog's row: ``engine`` uses the settings' default image again."""
    require_image_admin(actor)
    row = EngineImage.objects.select_for_update().filter(engine=_checked_engine(engine)).first()
    if row is None:
        return
    default = default_image(engine)
    audit.record(
        "engine_image.reset",
        actor=actor,
        target=row,
        before={"engine": engine, "image": row.image},
        after={"engine": engine, "image": default},
    )
    row.delete()


# --- Imports -------------------------------------------------------------------------------------


def _target_nodes(names: list[str]) -> list[Node]:
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not wanted:
        raise _invalid("nodes", "name at least one node")
    found = {n.name: n for n in Node.objects.filter(name__in=wanted)}
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise _invalid("nodes", f"no such node: {', '.join(unknown)}", code="unknown_node")
    down = [n for n in wanted if found[n].state == NodeState.UNREACHABLE]
    if down:
        raise Conflict(
            f"Node {', '.join(down)} is unreachable: its worker would not load the image.", code="node_unreachable"
        )
    return [found[n] for n in wanted]


def _checked_path(raw: str) -> Path:
    """The real path inside the import directory; checked again on the node, where it is read."""
    try:
        path = image_loader.resolve_import_path(raw)
    except image_loader.ImportFailed as exc:
        raise _invalid("path", str(exc), code="path_outside_import_dir") from None
    if not image_loader.import_dir().is_dir():
        return path  # this host does not mount the import directory; the node's worker will say
    if not path.is_file():
        raise _invalid("path", f"no file {path} in the import directory", code="file_not_found")
    with path.open("rb") as f:
        if not image_loader.looks_like_tarball(f.read(512)):
            raise _invalid("path", image_loader.not_a_tarball(path.name), code="not_a_tarball")
    return path


def _queue(actor: User, nodes: list[Node], path: Path, size: int, sha256: str) -> list[ImageImport]:
    imports = []
    for node in nodes:
        busy = ImageImport.objects.filter(node=node, path=str(path), state__in=IMPORT_ACTIVE_STATES).first()
        if busy is not None:
            raise Conflict(f"{path.name} is already being imported on {node.name} (import {busy.pk}).", code="busy")
        imp = ImageImport.objects.create(node=node, path=str(path), size_bytes=size, sha256=sha256, created_by=actor)
        audit.record("image.import", actor=actor, target=imp, after=image_loader.snapshot(imp))
        queue_on_commit(import_image, imp.pk, queue=node_queue(node.name))
        imports.append(imp)
    return imports


@transaction.atomic
def import_from_path(actor: User, *, nodes: list[str], path: str, sha256: str = "") -> list[ImageImport]:
    """Load a tarball already in the import directory on each of ``nodes``."""
    require_image_admin(actor)
    real = _checked_path(path)
    targets = _target_nodes(nodes)
    size = real.stat().st_size if real.is_file() else 0
    return _queue(actor, targets, real, size, sha256.lower())


@transaction.atomic
def import_upload(actor: User, upload: ReceivedTarball, *, nodes: list[str], sha256: str = "") -> list[ImageImport]:
    """Keep a received upload in the import directory (named by its checksum) and load it on ``nodes``."""
    require_image_admin(actor)
    targets = _target_nodes(nodes)
    if sha256 and sha256.lower() != upload.sha256:
        raise _invalid("sha256", f"the upload's SHA-256 is {upload.sha256}: the file was damaged on the way")
    if not image_loader.looks_like_tarball(upload.head()):
        raise _invalid("file", image_loader.not_a_tarball(safe_name(upload.name or "")), code="not_a_tarball")
    final = uploads_dir() / f"{upload.sha256[:16]}-{safe_name(upload.name or '')}"
    upload.keep(final)
    return _queue(actor, targets, final, int(upload.size or 0), upload.sha256)
